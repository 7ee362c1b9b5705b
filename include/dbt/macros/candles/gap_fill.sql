{#-
    Gap fill: an empty bucket carries the close before it (its open, high,
    low and close, when it is complete: candle_columns in candles.sql), so a
    chart never shows a flat candle it cannot vouch for.
-#}

{#- The CTEs `grouped` and `carried`: `relation` with the close an empty
    bucket would carry (the last close before it, in the range or from the
    seed) and its carry group (a run of buckets that starts with one that has
    trades, or the run before the range's first such bucket: group 0). -#}
{% macro carried_close(relation) -%}
grouped as (

    select
        {{ relation }}.*,
        count({{ relation }}.close) over (
            partition by {{ relation }}.symbol
            order by {{ relation }}.open_time
            rows between unbounded preceding and current row
        ) as carry_group
    from {{ relation }}

),

carried as (

    select
        grouped.*,
        coalesce(
            max(grouped.close) over (
                partition by grouped.symbol, grouped.carry_group
            ),
            seed.close
        ) as carried_close
    from grouped
    left join seed on grouped.symbol = seed.symbol

),
{%- endmacro %}
