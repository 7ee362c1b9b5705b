{#-
    Rollup: a larger interval from the minutes of candles_1m, its prices and
    volumes from the minutes with trades, its completeness from every minute.
-#}

{#- Per bucket, from the non-empty minutes of candles_1m. -#}
{% macro minute_buckets(relation, interval_us) -%}
    select
        symbol,
        {{ bucket_start('open_time', interval_us) }} as open_time,
        min_by(open, open_time) as open,
        max(high) as high,
        min(low) as low,
        max_by(close, open_time) as close,
        {{ sum_decimal('volume', 8) }} as volume,
        {{ sum_decimal('quote_volume', 16) }} as quote_volume,
        {{ sum_decimal('taker_buy_volume', 8) }} as taker_buy_volume,
        {{ sum_decimal('taker_buy_quote_volume', 16) }}
            as taker_buy_quote_volume,
        sum(trade_count) as trade_count,
        min(first_trade_id) as first_trade_id,
        max(last_trade_id) as last_trade_id,
        max(last_trade_time) as last_trade_time,
        max(last_loaded_at) as last_loaded_at
    from {{ relation }}
    where trade_count > 0
    group by 1, 2
{%- endmacro %}

{#- Per bucket, how many of its minutes are complete. -#}
{% macro complete_minutes(relation, interval_us) -%}
    select
        symbol,
        {{ bucket_start('open_time', interval_us) }} as open_time,
        sum(case when is_complete then 1 else 0 end) as complete_minutes
    from {{ relation }}
    group by 1, 2
{%- endmacro %}

{#- Per symbol, from the minutes of candles_1m read (`relation`: those from the
    start of the recomputed range on, every minute on a full build): its last
    minute's bucket, the end of its last closed minute, and its last minute (a
    larger bucket is complete only if every minute of it so far is). The
    minutes before the range change nothing: the last minute is in it (the
    range reaches the last kept bucket), and a closed minute before it closes
    no bucket of the range, which ends after it. So the whole of candles_1m is
    never read for them. -#}
{% macro minute_coverage(relation, interval_us) -%}
    {%- set minute_us = interval_length_us('1m') -%}
    select
        symbol,
        {{ bucket_start('max(open_time)', interval_us) }} as last_open,
        max(
            case
                when is_closed
                    then {{ epoch_us('open_time') }} + {{ minute_us }}
            end
        ) as closed_until_us,
        max(open_time) as last_minute
    from {{ relation }}
    group by symbol
{%- endmacro %}

{#- The CTE `judged`: each bucket of the series with its prices and volumes,
    and whether every minute of it so far (from its start to the symbol's
    last minute) is present and complete (`ids_complete`): a bucket that
    starts before the symbol's first minute lacks some. -#}
{% macro rolled_up_completeness(interval_us) -%}
{%- set minute_us = interval_length_us('1m') -%}
{%- set last_minute = (
    'least(' ~ add_us('series.open_time', interval_us - minute_us)
    ~ ', series.last_minute)'
) -%}
judged as (

    select
        {{ series_columns(interval_us) }},
        coalesce(complete_minutes.complete_minutes, 0) * {{ minute_us }}
        = {{ epoch_us(last_minute) }} - {{ epoch_us('series.open_time') }}
        + {{ minute_us }} as ids_complete
    from series
    left join buckets
        on
            series.symbol = buckets.symbol
            and series.open_time = buckets.open_time
    left join complete_minutes
        on
            series.symbol = complete_minutes.symbol
            and series.open_time = complete_minutes.open_time

),
{%- endmacro %}

{#- The CTE `completed`: a bucket with trades is complete when all its minutes
    so far are; an empty one needs a close to carry as well. -#}
{% macro empty_rollup_completeness() -%}
completed as (

    select
        carried.*,
        case
            when trade_count is not null then ids_complete
            else ids_complete and carried_close is not null
        end as is_complete
    from carried

),
{%- endmacro %}
