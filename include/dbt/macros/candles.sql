{#-
    The candle marts, Binance's klines from our trades, with their completeness by trade id
    (docs/architecture.md, "Data contract" and "The live edge"):

    - candles_1m aggregates stg_trades; the larger intervals roll up candles_1m: their prices and
      volumes from the minutes with trades (open = the first trade's price; high and low ignore empty
      minutes), their completeness from every minute. That reads far fewer rows than the trades.
    - Every bucket from the symbol's first trade to its coverage end is present. is_closed: the
      bucket's last microsecond is covered. Coverage end per symbol is the greatest of its last trade
      time, its stream heartbeat and its last complete repair window's end - 1 µs.
    - is_complete: no trade of the bucket can be missing. 1m: by trade id (macros/completeness.sql);
      an empty minute also needs every minute back to the last one with a trade complete, so that the
      close it carries is the last trade before it. Larger: every minute of it so far is present and
      complete. An empty bucket has volume 0 and trade_count 0, and open = high = low = close = the
      previous close when it is complete, null when it is not: never a flat candle over a gap.

    Incremental strategy: delete+insert over a recomputed range per symbol, from its first bucket to
    the coverage end. For candles_1m the range starts at the earliest of
      - the bucket of the earliest trade loaded since this mart's newest last_loaded_at (a late trade
        from a backfill hours later lands in an old bucket);
      - the kept bucket holding the last trade below the smallest id newly loaded: trades, and the
        anchors and exchange-side holes loaded since this mart's newest built_at (the span of
        missing ids after that trade may close or split, and the first trade after the last bucket
        with a trade may now be known, changing the completeness of the buckets from it on); the
        symbol's first bucket when no kept trade is below that id;
      - the last bucket (the forming tail, whose closedness and carried close move with coverage even
        without a trade). Nothing else changes a kept bucket: its completeness moves only with a new
        trade, anchor or hole (the reach-back above), its closedness only at the tail.
    For the larger intervals: the bucket of the earliest minute that candles_1m rebuilt since this
    mart's newest built_at (a minute's completeness can change without a new trade), or their last
    bucket. The close and the completeness carried into the range, and the last trade before it, are
    seeded from the kept buckets before it. Every bucket after a recomputed one is recomputed, so the
    result always equals a full refresh. Each run reads the trades (or minutes) of its range only,
    and the mart itself. dbt's microbatch was not used: its lookback counts back from now, not from
    the data, so it misses an older backfill.
-#}

{% macro candles(interval_us, grain) -%}
    {%- if grain == 'trades' -%}
        {{ cryptoflow.candles_from_trades(interval_us) }}
    {%- else -%}
        {{ cryptoflow.candles_from_minutes(interval_us) }}
    {%- endif -%}
{%- endmacro %}

{#- candles_1m: from stg_trades. -#}
{% macro candles_from_trades(interval_us) -%}
{%- set epoch = cryptoflow.from_epoch_us(0) -%}

with

{% if is_incremental() %}
kept as (

    -- per symbol: the mart's last bucket, and what its last build had seen
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

    -- per symbol, the earliest time and the smallest id of the trades loaded since the last build
    select symbol, min(trade_time) as first_time, min(trade_id) as first_id
    from {{ ref('stg_trades') }}
    {% if is_incremental() %}
    where loaded_at > (select coalesce(max(last_loaded_at), {{ epoch }}) from kept)
    {% endif %}
    group by symbol

),

{% if is_incremental() %}
new_marks as (

    -- per symbol, the smallest id named by the anchors and exchange-side holes loaded since the last build
    select symbol, min(trade_id) as first_id
    from (
        select symbol, trade_id, loaded_at from {{ ref('stg_trade_anchors') }}
        union all
        select symbol, trade_id, loaded_at from {{ ref('stg_trade_holes') }}
    ) as marks
    where loaded_at > (select coalesce(max(built_at), {{ epoch }}) from kept)
    group by symbol

),

new_ids as (

    select symbol, min(first_id) as first_id
    from (
        select symbol, first_id from new_trades
        union all
        select symbol, first_id from new_marks
    ) as ids
    group by symbol

),

reach_back as (

    -- the kept bucket holding the last trade below the smallest new id; the first bucket if none is
    select
        candles.symbol,
        coalesce(
            max(case when candles.first_trade_id < new_ids.first_id then candles.open_time end),
            min(candles.open_time)
        ) as open_time
    from {{ this }} as candles
    inner join new_ids on new_ids.symbol = candles.symbol
    where candles.trade_count > 0
    group by candles.symbol

),
{% endif %}

range_starts as (

    select symbol, {{ cryptoflow.bucket_start('first_time', interval_us) }} as open_time from new_trades
    {% if is_incremental() %}
    union all
    select symbol, open_time from reach_back
    {% endif %}

),

{{ cryptoflow.recomputed_rows(ref('stg_trades'), 'trade_time', with_last_trade=true) }}

buckets as (

    {{ cryptoflow.trade_buckets('source_rows', interval_us) }}

),

coverage as (

    {{ cryptoflow.trade_coverage('buckets', interval_us) }}

),

ranges as (

    select recompute_from.symbol, recompute_from.first_open, coverage.last_open, coverage.closed_until_us
    from recompute_from
    inner join coverage on coverage.symbol = recompute_from.symbol
    where recompute_from.first_open <= coverage.last_open

),

series as (

    {{ cryptoflow.bucket_series('ranges', ['symbol', 'closed_until_us'], interval_us) }}

),

{{ cryptoflow.trade_id_completeness(interval_us) }}

joined as (

    select
        {{ cryptoflow.series_columns(interval_us) }},
        coalesce(known.known_from < series.open_time, false) as known_before,
        coalesce(known.known_until >= {{ cryptoflow.add_us('series.open_time', interval_us) }}, false) as known_after,
        touched.symbol is not null as has_missing_ids,
        coalesce(touched.after_last_trade, false) as has_missing_ids_after_last_trade
    from series
    left join buckets on buckets.symbol = series.symbol and buckets.open_time = series.open_time
    left join known on known.symbol = series.symbol
    left join touched on touched.symbol = series.symbol and touched.open_time = series.open_time

),

judged as (

    select
        joined.*,
        -- the last trade before it is known, no id is missing around it, and unless it is the forming
        -- bucket with a trade (complete up to its last trade so far), the first trade after it is known
        known_before and not has_missing_ids and (known_after or (trade_count is not null and not is_closed))
            as ids_complete
    from joined

),

carrying as (

    -- whether the bucket's close is the last trade before its end: with a trade, when no id above its
    -- last trade is missing in it; empty, when it is complete by id (and the bucket before carries)
    select
        judged.*,
        case when trade_count is not null then not has_missing_ids_after_last_trade else ids_complete end
            as carries_close
    from judged

),

{{ cryptoflow.carried_close('carrying') }}

completed as (

    select
        carried.*,
        case
            when carried.trade_count is not null then carried.ids_complete
            -- empty: complete when the close it carries is known, back to the last bucket with a trade
            else carried.ids_complete
                and min(case when carried.carries_close then 1 else 0 end) over (
                    partition by carried.symbol, carried.carry_group
                    order by carried.open_time rows between unbounded preceding and current row
                ) = 1
                and (carried.carry_group > 0 or coalesce(seed_state.close_known, false))
                and carried.carried_close is not null
        end as is_complete
    from carried
    left join seed_state on seed_state.symbol = carried.symbol

),

final as (

    {{ cryptoflow.candle_columns('completed', interval_us) }}

)

select * from final
{%- endmacro %}

{#- candles_5m to candles_1d: rolled up from candles_1m. -#}
{% macro candles_from_minutes(interval_us) -%}

with

{% if is_incremental() %}
kept as (

    select symbol, max(open_time) as last_open, max(built_at) as built_at
    from {{ this }}
    group by symbol

),
{% endif %}

new_minutes as (

    -- per symbol, the earliest minute candles_1m rebuilt since this mart's last build
    select symbol, min(open_time) as first_time
    from {{ ref('candles_1m') }}
    {% if is_incremental() %}
    where built_at > (select coalesce(max(built_at), {{ cryptoflow.from_epoch_us(0) }}) from kept)
    {% endif %}
    group by symbol

),

range_starts as (

    select symbol, {{ cryptoflow.bucket_start('first_time', interval_us) }} as open_time from new_minutes

),

{{ cryptoflow.recomputed_rows(ref('candles_1m'), 'open_time', with_last_trade=false) }}

buckets as (

    {{ cryptoflow.minute_buckets('source_rows', interval_us) }}

),

complete_minutes as (

    select
        symbol,
        {{ cryptoflow.bucket_start('open_time', interval_us) }} as open_time,
        sum(case when is_complete then 1 else 0 end) as complete_minutes
    from source_rows
    group by 1, 2

),

coverage as (

    {{ cryptoflow.minute_coverage(interval_us) }}

),

ranges as (

    select
        recompute_from.symbol,
        recompute_from.first_open,
        coverage.last_open,
        coverage.closed_until_us,
        coverage.last_minute
    from recompute_from
    inner join coverage on coverage.symbol = recompute_from.symbol
    where recompute_from.first_open <= coverage.last_open

),

series as (

    {{ cryptoflow.bucket_series('ranges', ['symbol', 'closed_until_us', 'last_minute'], interval_us) }}

),

judged as (

    select
        {{ cryptoflow.series_columns(interval_us) }},
        -- every minute of it so far (from its start to the symbol's last minute) is present and complete:
        -- a bucket that starts before the symbol's first minute lacks some
        coalesce(complete_minutes.complete_minutes, 0) * 60000000 = {{ cryptoflow.epoch_us(
            'least(' ~ cryptoflow.add_us('series.open_time', interval_us - 60000000) ~ ', series.last_minute)'
        ) }} - {{ cryptoflow.epoch_us('series.open_time') }} + 60000000 as ids_complete
    from series
    left join buckets on buckets.symbol = series.symbol and buckets.open_time = series.open_time
    left join complete_minutes
        on complete_minutes.symbol = series.symbol and complete_minutes.open_time = series.open_time

),

{{ cryptoflow.carried_close('judged') }}

completed as (

    select
        carried.*,
        case
            when trade_count is not null then ids_complete
            else ids_complete and carried_close is not null
        end as is_complete
    from carried

),

final as (

    {{ cryptoflow.candle_columns('completed', interval_us) }}

)

select * from final
{%- endmacro %}

{#- The CTEs `recompute_from` (per symbol, the earliest of `range_starts` and, incrementally, the last
    kept bucket: the forming tail, whose closedness and carried close move with coverage even without
    a trade), `seed` (the kept bucket before it) and `source_rows` (the rows of `source_model` from it
    on; every row on a full build). -#}
{% macro recomputed_rows(source_model, time_column, with_last_trade) -%}
recompute_from as (

    select symbol, min(open_time) as first_open
    from (
        select symbol, open_time from range_starts
        {% if is_incremental() %}
        union all
        select symbol, last_open from kept
        {% endif %}
    ) as starts
    group by symbol

),

seed as (

    {{ cryptoflow.kept_seed(with_last_trade) }}

),

source_rows as (

    select source_model.*
    from {{ source_model }} as source_model
    {% if is_incremental() %}
    inner join recompute_from
        on recompute_from.symbol = source_model.symbol
        and source_model.{{ time_column }} >= recompute_from.first_open
    {% endif %}

),
{%- endmacro %}

{#- The last kept bucket before each symbol's recomputed range: its close and completeness, carried into
    the range; with_last_trade: its trade count and the last trade before the range (id and time) too.
    Empty on a full build. -#}
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
        inner join recompute_from on recompute_from.symbol = candles.symbol
        where candles.open_time < recompute_from.first_open
        group by candles.symbol
    ) as before_range
    inner join {{ this }} as candles
        on candles.symbol = before_range.symbol and candles.open_time = before_range.open_time
    {% else %}
    select
        symbol,
        cast(null as decimal(38, 8)) as close,
        cast(null as boolean) as is_complete
        {%- if with_last_trade %},
        cast(null as bigint) as trade_count,
        cast(null as bigint) as last_trade_id,
        cast(null as {{ cryptoflow.timestamp_type() }}) as last_trade_time
        {%- endif %}
    from recompute_from
    where 1 = 0
    {% endif %}
{%- endmacro %}

{#- A bucket of the series, with the columns of `buckets` left-joined to it (null when it has no trade)
    and whether it is closed. -#}
{% macro series_columns(interval_us) -%}
    series.symbol,
        series.open_time,
        {%- for column in ('open', 'high', 'low', 'close', 'volume', 'quote_volume', 'taker_buy_volume',
                           'taker_buy_quote_volume', 'trade_count', 'first_trade_id', 'last_trade_id',
                           'last_trade_time', 'last_loaded_at') %}
        buckets.{{ column }},
        {%- endfor %}
        coalesce({{ cryptoflow.epoch_us('series.open_time') }} + {{ interval_us }} <= series.closed_until_us, false)
            as is_closed
{%- endmacro %}

{#- The CTEs `grouped` and `carried`: `relation` with the close an empty bucket would carry (the last close before it, in the
    range or from the seed) and its carry group (a run of buckets that starts with one that has trades, or
    the run before the range's first such bucket: group 0). -#}
{% macro carried_close(relation) -%}
grouped as (

    select
        {{ relation }}.*,
        count({{ relation }}.close) over (
            partition by {{ relation }}.symbol order by {{ relation }}.open_time rows between unbounded preceding and current row
        ) as carry_group
    from {{ relation }}

),

carried as (

    select
        grouped.*,
        coalesce(max(grouped.close) over (partition by grouped.symbol, grouped.carry_group), seed.close)
            as carried_close
    from grouped
    left join seed on seed.symbol = grouped.symbol

),
{%- endmacro %}

{#- The mart's columns, in the contract's order (include/warehouse/snapshot.py CANDLE_COLUMNS). An empty
    bucket is flat at the carried close when complete, without prices when not. -#}
{% macro candle_columns(relation, interval_us) -%}
    select
        symbol,
        open_time,
        {{ cryptoflow.add_us('open_time', interval_us - 1000) }} as close_time,
        {%- for price in ('open', 'high', 'low', 'close') %}
        cast(coalesce({{ price }}, case when is_complete then carried_close end) as decimal(38, 8)) as {{ price }},
        {%- endfor %}
        cast(coalesce(volume, 0) as decimal(38, 8)) as volume,
        cast(coalesce(quote_volume, 0) as decimal(38, 16)) as quote_volume,
        cast(coalesce(taker_buy_volume, 0) as decimal(38, 8)) as taker_buy_volume,
        cast(coalesce(taker_buy_quote_volume, 0) as decimal(38, 16)) as taker_buy_quote_volume,
        cast(coalesce(trade_count, 0) as bigint) as trade_count,
        cast(first_trade_id as bigint) as first_trade_id,
        cast(last_trade_id as bigint) as last_trade_id,
        last_trade_time,
        is_closed,
        is_complete,
        last_loaded_at,
        {{ cryptoflow.build_time() }} as built_at
    from {{ relation }}
{%- endmacro %}

{#- Per bucket, from trades: open and close are the first and last trade by id; the taker bought
    when the buyer was not the maker. Sums are exact, in the contract's decimals. -#}
{% macro trade_buckets(relation, interval_us) -%}
    select
        symbol,
        {{ cryptoflow.bucket_start('trade_time', interval_us) }} as open_time,
        min_by(price, trade_id) as open,
        max(price) as high,
        min(price) as low,
        max_by(price, trade_id) as close,
        {{ cryptoflow.sum_decimal('quantity', 8) }} as volume,
        {{ cryptoflow.sum_decimal('quote_quantity', 16) }} as quote_volume,
        {{ cryptoflow.sum_decimal('case when is_buyer_maker then 0 else quantity end', 8) }} as taker_buy_volume,
        {{ cryptoflow.sum_decimal('case when is_buyer_maker then 0 else quote_quantity end', 16) }}
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

{#- Per bucket, from the non-empty minutes of candles_1m. -#}
{% macro minute_buckets(relation, interval_us) -%}
    select
        symbol,
        {{ cryptoflow.bucket_start('open_time', interval_us) }} as open_time,
        min_by(open, open_time) as open,
        max(high) as high,
        min(low) as low,
        max_by(close, open_time) as close,
        {{ cryptoflow.sum_decimal('volume', 8) }} as volume,
        {{ cryptoflow.sum_decimal('quote_volume', 16) }} as quote_volume,
        {{ cryptoflow.sum_decimal('taker_buy_volume', 8) }} as taker_buy_volume,
        {{ cryptoflow.sum_decimal('taker_buy_quote_volume', 16) }} as taker_buy_quote_volume,
        sum(trade_count) as trade_count,
        min(first_trade_id) as first_trade_id,
        max(last_trade_id) as last_trade_id,
        max(last_trade_time) as last_trade_time,
        max(last_loaded_at) as last_loaded_at
    from {{ relation }}
    where trade_count > 0
    group by 1, 2
{%- endmacro %}

{#- Per symbol: the last bucket to build, and the first instant (µs) not covered by the data. The
    last trade comes from the buckets being recomputed, so no incremental run scans all of stg_trades:
    a symbol without a trade in its range has its last trade before the range, and were that its
    coverage end, the range would be empty either way. -#}
{% macro trade_coverage(buckets, interval_us) -%}
    select
        symbol,
        {{ cryptoflow.bucket_start('max(covered_to)', interval_us) }} as last_open,
        {{ cryptoflow.epoch_us('max(covered_to)') }} + 1 as closed_until_us
    from (
        select symbol, max(last_trade_time) as covered_to from {{ buckets }} group by symbol
        union all
        select symbol, max(updated_at) as covered_to from {{ ref('stg_stream_status') }} group by symbol
        union all
        select symbol, {{ cryptoflow.add_us('max(window_end)', -1) }} as covered_to
        from {{ ref('stg_completeness') }}
        where is_complete
        group by symbol
    ) as covered
    group by symbol
{%- endmacro %}

{#- Per symbol, from candles_1m: its last minute's bucket, the end of its last closed minute, and its last
    minute (a larger bucket is complete only if every minute of it so far is). -#}
{% macro minute_coverage(interval_us) -%}
    select
        symbol,
        {{ cryptoflow.bucket_start('max(open_time)', interval_us) }} as last_open,
        max(case when is_closed then {{ cryptoflow.epoch_us('open_time') }} + 60000000 end) as closed_until_us,
        max(open_time) as last_minute
    from {{ ref('candles_1m') }}
    group by symbol
{%- endmacro %}
