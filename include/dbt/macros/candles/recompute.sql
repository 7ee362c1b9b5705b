{#-
    Which buckets a run recomputes, per symbol: from the start of its range to
    the coverage end, every bucket after a recomputed one included.

    candles_1m's range starts at the earliest of
    - the bucket of the earliest trade loaded since this mart's newest
      last_loaded_at (a late trade from a backfill hours later lands in an old
      bucket);
    - the kept bucket holding the last trade below the smallest id newly
      loaded: trades, and the anchors and exchange-side holes loaded since
      this mart's newest built_at (the span of missing ids after that trade
      may close or split, and the first trade after the last bucket with a
      trade may now be known, changing the completeness of the buckets from
      it on); the symbol's first bucket when no kept trade is below that id;
    - the last bucket (the forming tail, whose closedness and carried close
      move with coverage even without a trade). Nothing else changes a kept
      bucket: its completeness moves only with a new trade, anchor or hole
      (the reach-back above), its closedness only at the tail.
    A larger interval's range starts at the bucket of the earliest minute
    that candles_1m rebuilt since this mart's newest built_at (a minute's
    completeness can change without a new trade), or at its last bucket.
-#}

{#- The CTEs `kept` (incrementally: per symbol, the mart's last bucket and
    what its last build had seen), `new_trades`, `new_marks`, `new_ids`,
    `reach_back` and `range_starts`: where candles_1m's range starts, but for
    the last kept bucket (recomputed_rows adds it). -#}
{% macro trade_range_starts(interval_us) -%}
{%- set epoch = from_epoch_us(0) -%}
{% if is_incremental() %}
kept as (

    select
        symbol,
        max(open_time) as last_open,
        max(last_loaded_at) as last_loaded_at,
        max(built_at) as built_at
    from {{ this }}
    group by symbol

),
{% endif %}

new_trades as (

    -- per symbol, the earliest time and the smallest id of the trades loaded
    -- since the last build
    select
        symbol,
        min(trade_time) as first_time,
        min(trade_id) as first_id
    from {{ ref('stg_trades') }}
    {% if is_incremental() %}
        where
            loaded_at
            > (select coalesce(max(last_loaded_at), {{ epoch }}) from kept)
    {% endif %}
    group by symbol

),

{% if is_incremental() %}
new_marks as (

    -- per symbol, the smallest id named by the anchors and exchange-side
    -- holes loaded since the last build
    select
        symbol,
        min(trade_id) as first_id
    from (
        select
            symbol,
            trade_id,
            loaded_at
        from {{ ref('stg_trade_anchors') }}
        union all
        select
            symbol,
            trade_id,
            loaded_at
        from {{ ref('stg_trade_holes') }}
    ) as marks
    where loaded_at > (select coalesce(max(built_at), {{ epoch }}) from kept)
    group by symbol

),

new_ids as (

    select
        symbol,
        min(first_id) as first_id
    from (
        select
            symbol,
            first_id
        from new_trades
        union all
        select
            symbol,
            first_id
        from new_marks
    ) as ids
    group by symbol

),

reach_back as (

    -- the kept bucket holding the last trade below the smallest new id; the
    -- first bucket if none is
    select
        candles.symbol,
        coalesce(
            max(
                case
                    when candles.first_trade_id < new_ids.first_id
                        then candles.open_time
                end
            ),
            min(candles.open_time)
        ) as open_time
    from {{ this }} as candles
    inner join new_ids on candles.symbol = new_ids.symbol
    where candles.trade_count > 0
    group by candles.symbol

),
{% endif %}

range_starts as (

    select
        symbol,
        {{ bucket_start('first_time', interval_us) }} as open_time
    from new_trades
    {% if is_incremental() %}
        union all
        select
            symbol,
            open_time
        from reach_back
    {% endif %}

),
{%- endmacro %}

{#- The CTEs `kept` (incrementally: per symbol, the mart's last bucket and its
    last build's time), `new_minutes` and `range_starts`: where a larger
    interval's range starts, but for the last kept bucket. -#}
{% macro minute_range_starts(interval_us) -%}
{% if is_incremental() %}
kept as (

    select
        symbol,
        max(open_time) as last_open,
        max(built_at) as built_at
    from {{ this }}
    group by symbol

),
{% endif %}

new_minutes as (

    -- per symbol, the earliest minute candles_1m rebuilt since this mart's
    -- last build
    select
        symbol,
        min(open_time) as first_time
    from {{ ref('candles_1m') }}
    {% if is_incremental() %}
        where
            built_at
            > (select coalesce(max(built_at), {{ from_epoch_us(0) }}) from kept)
    {% endif %}
    group by symbol

),

range_starts as (

    select
        symbol,
        {{ bucket_start('first_time', interval_us) }} as open_time
    from new_minutes

),
{%- endmacro %}

{#- The CTEs `recompute_from` (per symbol, the earliest of `range_starts`
    and, incrementally, the last kept bucket: the forming tail), `seed` (the
    kept bucket before it) and `source_rows` (the rows of `source_model` from
    it on; every row on a full build). -#}
{% macro recomputed_rows(source_model, time_column, with_last_trade) -%}
recompute_from as (

    select
        symbol,
        min(open_time) as first_open
    from (
        select
            symbol,
            open_time
        from range_starts
        {% if is_incremental() %}
            union all
            select
                symbol,
                last_open
            from kept
        {% endif %}
    ) as starts
    group by symbol

),

seed as (

    {{ kept_seed(with_last_trade) }}

),

source_rows as (

    select source_model.*
    from {{ source_model }} as source_model
    {% if is_incremental() %}
        inner join recompute_from
            on
                source_model.symbol = recompute_from.symbol
                and source_model.{{ time_column }} >= recompute_from.first_open
    {% endif %}

),
{%- endmacro %}

{#- The last kept bucket before each symbol's recomputed range: its close and
    completeness, carried into the range; with_last_trade: its trade count
    and the last trade before the range (id and time) too. Empty on a full
    build. -#}
{% macro kept_seed(with_last_trade) -%}
    {% if is_incremental() %}
        select
            before_range.symbol,
            candles.close,
            candles.is_complete
            {%- if with_last_trade %},
                candles.trade_count,
                before_range.last_trade_id,
                before_range.last_trade_time
            {%- endif %}
        from (
            select
                candles.symbol,
                max(candles.open_time) as open_time,
                max(candles.last_trade_id) as last_trade_id,
                max(candles.last_trade_time) as last_trade_time
            from {{ this }} as candles
            inner join recompute_from on candles.symbol = recompute_from.symbol
            where candles.open_time < recompute_from.first_open
            group by candles.symbol
        ) as before_range
        inner join {{ this }} as candles
            on
                before_range.symbol = candles.symbol
                and before_range.open_time = candles.open_time
    {% else %}
        select
            symbol,
            cast(null as decimal(38, 8)) as close,
            cast(null as boolean) as is_complete
            {%- if with_last_trade %},
                cast(null as bigint) as trade_count,
                cast(null as bigint) as last_trade_id,
                cast(null as {{ timestamp_type() }}) as last_trade_time
            {%- endif %}
        from recompute_from
        where 1 = 0
    {% endif %}
{%- endmacro %}
