{#-
    Bucketing: the trades of each bucket, how far the data covers each
    symbol, and the series of buckets to build, every one from the start of
    the recomputed range to the coverage end (an empty bucket too).
-#}

{#- Per bucket, from trades: open and close are the first and last trade by
    id; the taker bought when the buyer was not the maker. Sums are exact, in
    the contract's decimals. -#}
{% macro trade_buckets(relation, interval_us) -%}
    {%- set taker = 'case when is_buyer_maker then 0 else {} end' -%}
    select
        symbol,
        {{ bucket_start('trade_time', interval_us) }} as open_time,
        min_by(price, trade_id) as open,
        max(price) as high,
        min(price) as low,
        max_by(price, trade_id) as close,
        {{ sum_decimal('quantity', 8) }} as volume,
        {{ sum_decimal('quote_quantity', 16) }} as quote_volume,
        {{ sum_decimal(taker.format('quantity'), 8) }} as taker_buy_volume,
        {{ sum_decimal(taker.format('quote_quantity'), 16) }}
            as taker_buy_quote_volume,
        count(*) as trade_count,
        min(trade_id) as first_trade_id,
        max(trade_id) as last_trade_id,
        min(trade_time) as first_trade_time,
        max(trade_time) as last_trade_time,
        max(loaded_at) as last_loaded_at
    from {{ relation }}
    group by 1, 2
{%- endmacro %}

{#- Per symbol: the last bucket to build, and the first instant (µs) not
    covered by the data. The last trade comes from the buckets being
    recomputed, so no incremental run scans all of stg_trades: a symbol
    without a trade in its range has its last trade before the range, and
    were that its coverage end, the range would be empty either way. -#}
{% macro trade_coverage(buckets, interval_us) -%}
    select
        symbol,
        {{ bucket_start('max(covered_to)', interval_us) }} as last_open,
        {{ epoch_us('max(covered_to)') }} + 1 as closed_until_us
    from (
        select
            symbol,
            max(last_trade_time) as covered_to
        from {{ buckets }}
        group by symbol
        union all
        select
            symbol,
            max(updated_at) as covered_to
        from {{ ref('stg_stream_status') }}
        group by symbol
        union all
        select
            symbol,
            {{ add_us('max(window_end)', -1) }} as covered_to
        from {{ ref('stg_completeness') }}
        where is_complete
        group by symbol
    ) as covered
    group by symbol
{%- endmacro %}

{#- The CTEs `ranges` (per symbol, the first bucket to recompute, the last
    one, and the `coverage` columns named) and `series` (one row per bucket
    of each range, with those columns). -#}
{% macro bucket_spine(coverage_columns, interval_us) -%}
ranges as (

    select
        recompute_from.symbol,
        recompute_from.first_open,
        coverage.last_open,
        {%- for column in coverage_columns %}
            coverage.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from recompute_from
    inner join coverage on recompute_from.symbol = coverage.symbol
    where recompute_from.first_open <= coverage.last_open

),

series as (

    {{ bucket_series('ranges', ['symbol'] + coverage_columns, interval_us) }}

),
{%- endmacro %}

{#- A bucket of the series, with the columns of `buckets` left-joined to it
    (null when it has no trade) and whether it is closed. -#}
{% macro series_columns(interval_us) -%}
    {%- set bucket_columns = (
        'open', 'high', 'low', 'close', 'volume', 'quote_volume',
        'taker_buy_volume', 'taker_buy_quote_volume', 'trade_count',
        'first_trade_id', 'last_trade_id', 'last_trade_time', 'last_loaded_at'
    ) -%}
    series.symbol,
    series.open_time,
    {%- for column in bucket_columns %}
        buckets.{{ column }},
    {%- endfor %}
    coalesce(
        {{ epoch_us('series.open_time') }} + {{ interval_us }}
        <= series.closed_until_us,
        false
    ) as is_closed
{%- endmacro %}
