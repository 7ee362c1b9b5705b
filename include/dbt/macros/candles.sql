{#-
    The candle marts, Binance's klines from our trades (docs/architecture.md):

    - candles_1m aggregates stg_trades; the larger intervals roll up the non-empty minutes of
      candles_1m (open = the first trade's price, from the first minute that has a trade; high and
      low ignore empty minutes), which reads far fewer rows than the trades.
    - Every bucket from the symbol's first trade to its coverage end is present; an empty one has
      volume 0, trade_count 0 and open = high = low = close = the previous close.
    - is_closed: the bucket's last microsecond is covered. Coverage end per symbol is the greatest of
      its last trade time, its stream heartbeat and its last complete repair window's end - 1 µs.

    Incremental strategy: delete+insert over the touched range per symbol. The range starts at the
    earliest bucket that a row loaded since this mart's newest last_loaded_at touches (a late trade
    from a backfill hours later lands in an old bucket), or at the symbol's last bucket (the forming
    tail, whose closedness and carried close move with coverage even without trades), whichever is
    earlier, and runs to the coverage end; the carried close is seeded from the last bucket kept
    before it. Every bucket after a touched one is recomputed, so the empty buckets whose carried
    close changes are too, and the result always equals a full refresh. dbt's microbatch was not
    used: its lookback counts back from now, not from the data, so it misses an older backfill.
-#}

{% macro candles(interval_us, grain) -%}
{%- set source_model = ref('stg_trades') if grain == 'trades' else ref('candles_1m') -%}
{%- set time_column = 'trade_time' if grain == 'trades' else 'open_time' -%}
{%- set loaded_column = 'loaded_at' if grain == 'trades' else 'last_loaded_at' -%}

with

{% if is_incremental() %}
kept as (

    select symbol, max(open_time) as last_open, max(last_loaded_at) as last_loaded_at
    from {{ this }}
    group by symbol

),
{% endif %}

new_rows as (

    -- per symbol, the earliest time that rows loaded since the last run touch
    select symbol, min({{ time_column }}) as first_time
    from {{ source_model }}
    {% if is_incremental() %}
    where {{ loaded_column }} > (select coalesce(max(last_loaded_at), {{ cryptoflow.from_epoch_us(0) }}) from kept)
    {% endif %}
    group by symbol

),

recompute_from as (

    {% if is_incremental() %}
    select
        coalesce(new_rows.symbol, kept.symbol) as symbol,
        case
            when new_rows.first_time is null then kept.last_open
            when kept.last_open is null then {{ cryptoflow.bucket_start('new_rows.first_time', interval_us) }}
            when {{ cryptoflow.bucket_start('new_rows.first_time', interval_us) }} < kept.last_open
                then {{ cryptoflow.bucket_start('new_rows.first_time', interval_us) }}
            else kept.last_open
        end as first_open
    from new_rows
    full outer join kept on kept.symbol = new_rows.symbol
    {% else %}
    select symbol, {{ cryptoflow.bucket_start('first_time', interval_us) }} as first_open
    from new_rows
    {% endif %}

),

seed as (

    -- the close carried into the recomputed range: the last kept bucket's
    {% if is_incremental() %}
    select candles.symbol, max_by(candles.close, candles.open_time) as close
    from {{ this }} as candles
    inner join recompute_from on recompute_from.symbol = candles.symbol
    where candles.open_time < recompute_from.first_open
    group by candles.symbol
    {% else %}
    select symbol, cast(null as decimal(38, 8)) as close
    from recompute_from
    where false
    {% endif %}

),

source_rows as (

    select source_model.*
    from {{ source_model }} as source_model
    {% if is_incremental() %}
    inner join recompute_from
        on recompute_from.symbol = source_model.symbol
        and source_model.{{ time_column }} >= recompute_from.first_open
    {% endif %}
    {% if grain != 'trades' %}
    where source_model.trade_count > 0
    {% endif %}

),

buckets as (

    {% if grain == 'trades' %}
    {{ cryptoflow.trade_buckets('source_rows', interval_us) }}
    {% else %}
    {{ cryptoflow.minute_buckets('source_rows', interval_us) }}
    {% endif %}

),

coverage as (

    {% if grain == 'trades' %}
    {{ cryptoflow.trade_coverage('buckets', interval_us) }}
    {% else %}
    {{ cryptoflow.minute_coverage(interval_us) }}
    {% endif %}

),

spans as (

    select recompute_from.symbol, recompute_from.first_open, coverage.last_open, coverage.closed_until_us
    from recompute_from
    inner join coverage on coverage.symbol = recompute_from.symbol
    where recompute_from.first_open <= coverage.last_open

),

series as (

    {{ cryptoflow.bucket_series('spans', ['symbol', 'closed_until_us'], interval_us) }}

),

joined as (

    select
        series.symbol,
        series.open_time,
        series.closed_until_us,
        buckets.open,
        buckets.high,
        buckets.low,
        buckets.close,
        buckets.volume,
        buckets.quote_volume,
        buckets.taker_buy_volume,
        buckets.taker_buy_quote_volume,
        buckets.trade_count,
        buckets.last_loaded_at,
        -- a run of buckets that starts with one that has trades: they all carry its close
        count(buckets.close) over (
            partition by series.symbol order by series.open_time rows between unbounded preceding and current row
        ) as carry_group
    from series
    left join buckets on buckets.symbol = series.symbol and buckets.open_time = series.open_time

),

carried as (

    select
        joined.*,
        coalesce(max(joined.close) over (partition by joined.symbol, joined.carry_group), seed.close) as carried_close
    from joined
    left join seed on seed.symbol = joined.symbol

),

final as (

    select
        symbol,
        open_time,
        {{ cryptoflow.add_us('open_time', interval_us - 1000) }} as close_time,
        cast(coalesce(open, carried_close) as decimal(38, 8)) as open,
        cast(coalesce(high, carried_close) as decimal(38, 8)) as high,
        cast(coalesce(low, carried_close) as decimal(38, 8)) as low,
        cast(coalesce(close, carried_close) as decimal(38, 8)) as close,
        cast(coalesce(volume, 0) as decimal(38, 8)) as volume,
        cast(coalesce(quote_volume, 0) as decimal(38, 16)) as quote_volume,
        cast(coalesce(taker_buy_volume, 0) as decimal(38, 8)) as taker_buy_volume,
        cast(coalesce(taker_buy_quote_volume, 0) as decimal(38, 16)) as taker_buy_quote_volume,
        cast(coalesce(trade_count, 0) as bigint) as trade_count,
        coalesce({{ cryptoflow.epoch_us('open_time') }} + {{ interval_us }} <= closed_until_us, false) as is_closed,
        last_loaded_at
    from carried

)

select * from final
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
        max(loaded_at) as last_loaded_at,
        max(trade_time) as last_trade_time
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
        max(last_loaded_at) as last_loaded_at
    from {{ relation }}
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

{#- Per symbol, from candles_1m: its last minute's bucket, and the end of its last closed minute. -#}
{% macro minute_coverage(interval_us) -%}
    select
        symbol,
        {{ cryptoflow.bucket_start('max(open_time)', interval_us) }} as last_open,
        max(case when is_closed then {{ cryptoflow.epoch_us('open_time') }} + 60000000 end) as closed_until_us
    from {{ ref('candles_1m') }}
    group by symbol
{%- endmacro %}
