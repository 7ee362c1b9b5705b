{#-
    The candle marts, Binance's klines from our trades, with their completeness
    by trade id (docs/architecture.md, "Data contract" and "The live edge").
    A mart names its interval, `candles('5m')`; its length comes from the name.

    - candles_1m aggregates stg_trades; the larger intervals roll up
      candles_1m: their prices and volumes from the minutes with trades (open =
      the first trade's price; high and low ignore empty minutes), their
      completeness from every minute. That reads far fewer rows than the
      trades.
    - Every bucket from the symbol's first trade to its coverage end is
      present. is_closed: the bucket's last microsecond is covered. Coverage
      end per symbol is the greatest of its last trade time, its stream
      heartbeat and its last complete repair window's end - 1 µs.
    - is_complete: no trade of the bucket can be missing. 1m: by trade id
      (candles/completeness.sql); an empty minute also needs every minute back
      to the last one with a trade complete, so that the close it carries is
      the last trade before it. Larger: every minute of it so far is present
      and complete. An empty bucket has volume 0 and trade_count 0, and open =
      high = low = close = the previous close when it is complete, null when
      it is not: never a flat candle over a gap (candles/gap_fill.sql).

    The parts, each a macro of its own file under candles/, each defining the
    CTEs named in its comment:
    - recompute.sql: which buckets a run recomputes, and the rows it reads;
    - bucketing.sql: the trades per bucket, the coverage, the series of
      buckets;
    - completeness.sql: the completeness of 1m buckets by trade id;
    - gap_fill.sql: the close an empty bucket carries;
    - rollup.sql: the larger intervals from the minutes.

    Incremental strategy: delete+insert over a recomputed range per symbol,
    from its first bucket to the coverage end (candles/recompute.sql says
    where the range starts). The close and the completeness carried into the
    range, and the last trade before it, are seeded from the kept buckets
    before it. Every bucket after a recomputed one is recomputed, so the
    result always equals a full refresh. Each run reads the trades (or
    minutes) of its range only, and the mart itself. dbt's microbatch was not
    used: its lookback counts back from now, not from the data, so it misses
    an older backfill.

    Rows are written in time order (`in_time_order`), so the mart's storage
    holds recent buckets together: what a build reads from its range start on
    skips the older row groups (DuckDB) or micro-partitions (Snowflake).
    Incremental builds append in time order anyway; this makes a full build
    lay the history out the same way.
-#}

{#- The candles of one interval: the minutes from the trades, the larger
    intervals rolled up from the minutes. -#}
{% macro candles(interval) -%}
    {%- set interval_us = interval_length_us(interval) -%}
    {%- if interval_us == interval_length_us('1m') -%}
        {{ candles_from_trades(interval_us) }}
    {%- else -%}
        {{ candles_from_minutes(interval_us) }}
    {%- endif -%}
{%- endmacro %}

{#- An interval's length in microseconds, from its name as Binance writes it
    (include/candles.py): a whole number of minutes (m), hours (h) or days
    (d). -#}
{% macro interval_length_us(interval) -%}
    {%- set unit_us = {'m': 60000000, 'h': 3600000000, 'd': 86400000000} -%}
    {%- set count, unit = interval[:-1], interval[-1:] -%}
    {%- if not count.isdigit() or count | int == 0 or unit not in unit_us -%}
        {{ exceptions.raise_compiler_error(
            "candles: " ~ interval ~ " is not an interval like 5m, 4h or 1d"
        ) }}
    {%- endif -%}
    {{ return(count | int * unit_us[unit]) }}
{%- endmacro %}

{#- candles_1m: from stg_trades. -#}
{% macro candles_from_trades(interval_us) -%}
with

{{ trade_range_starts(interval_us) }}

{{ recomputed_rows(ref('stg_trades'), 'trade_time', with_last_trade=true) }}

buckets as (

    {{ trade_buckets('source_rows', interval_us) }}

),

coverage as (

    {{ trade_coverage('buckets', interval_us) }}

),

{{ bucket_spine(['closed_until_us'], interval_us) }}

{{ trade_id_completeness(interval_us) }}

{{ minute_completeness(interval_us) }}

{{ carried_close('carrying') }}

{{ empty_minute_completeness() }}

final as (

    {{ candle_columns('completed', interval_us) }}

)

{{ in_time_order('final') }}
{%- endmacro %}

{#- candles_5m to candles_1d: rolled up from candles_1m. -#}
{% macro candles_from_minutes(interval_us) -%}
with

{{ minute_range_starts(interval_us) }}

{{ recomputed_rows(ref('candles_1m'), 'open_time', with_last_trade=false) }}

buckets as (

    {{ minute_buckets('source_rows', interval_us) }}

),

complete_minutes as (

    {{ complete_minutes('source_rows', interval_us) }}

),

coverage as (

    {{ minute_coverage('source_rows', interval_us) }}

),

{{ bucket_spine(['closed_until_us', 'last_minute'], interval_us) }}

{{ rolled_up_completeness(interval_us) }}

{{ carried_close('judged') }}

{{ empty_rollup_completeness() }}

final as (

    {{ candle_columns('completed', interval_us) }}

)

{{ in_time_order('final') }}
{%- endmacro %}

{#- Every row of `relation`, the oldest buckets first. -#}
{% macro in_time_order(relation) -%}
select * from {{ relation }}
order by open_time, symbol
{%- endmacro %}

{#- The mart's columns, in the contract's order (include/candles.py
    CANDLE_COLUMNS). An empty bucket is flat at the carried close when
    complete, without prices when not. -#}
{% macro candle_columns(relation, interval_us) -%}
    select
        symbol,
        open_time,
        {{ add_us('open_time', interval_us - 1000) }} as close_time,
        {%- for price in ('open', 'high', 'low', 'close') %}
        cast(
            coalesce({{ price }}, case when is_complete then carried_close end)
            as decimal(38, 8)
        ) as {{ price }},
        {%- endfor %}
        cast(coalesce(volume, 0) as decimal(38, 8)) as volume,
        cast(coalesce(quote_volume, 0) as decimal(38, 16)) as quote_volume,
        cast(coalesce(taker_buy_volume, 0) as decimal(38, 8))
            as taker_buy_volume,
        cast(coalesce(taker_buy_quote_volume, 0) as decimal(38, 16))
            as taker_buy_quote_volume,
        cast(coalesce(trade_count, 0) as bigint) as trade_count,
        cast(first_trade_id as bigint) as first_trade_id,
        cast(last_trade_id as bigint) as last_trade_id,
        last_trade_time,
        is_closed,
        is_complete,
        last_loaded_at,
        {{ build_time() }} as built_at
    from {{ relation }}
{%- endmacro %}
