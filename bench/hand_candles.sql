-- The six candle marts by hand, in one DuckDB connection: the baseline of the transform benchmark's
-- full-build ratio (issue 19). Same columns, zero-fill, completeness by trade id and exact decimals
-- as marts.candles_* (docs/architecture.md, "The live edge"), none of dbt's machinery: no
-- incremental logic, no tests, no per-model transaction. Reads staging.stg_trades (the marts' input)
-- and raw's status tables, writes hand.candles_*.
-- {intervals} is replaced by the benchmark with rows of (name, width in µs).

create schema if not exists hand;

-- The marts' input, as they read it: staging.stg_trades, one row per trade (dbt builds it first).
create or replace temp view trades as
select symbol, trade_id, price, quantity, quote_quantity, trade_time, is_buyer_maker from staging.stg_trades;

-- "The first trade at or after T is X", from the repair's windows and the live fills' start gaps.
create or replace temp table anchors as
select symbol, window_start as anchor_time, first_id as trade_id from raw.completeness where first_id is not null
union all
select symbol, window_end, end_id from raw.completeness where end_id is not null
union all
select symbol, since, first_id from raw.gap_fills where since is not null;

create or replace temp table holes as
select distinct symbol, unnest(from_json(holes, '["BIGINT"]')) as trade_id from raw.completeness
union
select distinct symbol, unnest(from_json(holes, '["BIGINT"]')) from raw.gap_fills;

create or replace temp table minute_trades as
select
    symbol,
    epoch_us(trade_time) // 60000000 * 60000000 as open_us,
    min_by(price, trade_id) as open,
    max(price) as high,
    min(price) as low,
    max_by(price, trade_id) as close,
    cast(sum(quantity) as decimal(38, 8)) as volume,
    cast(sum(quote_quantity) as decimal(38, 16)) as quote_volume,
    cast(sum(case when is_buyer_maker then 0 else quantity end) as decimal(38, 8)) as taker_buy_volume,
    cast(sum(case when is_buyer_maker then 0 else quote_quantity end) as decimal(38, 16)) as taker_buy_quote_volume,
    count(*) as trade_count,
    min(trade_id) as first_trade_id,
    max(trade_id) as last_trade_id,
    min(trade_time) as first_trade_time,
    max(trade_time) as last_trade_time
from trades
group by 1, 2;

-- What is known of the ids, in id order: each minute's trades as one element (ids first..last at
-- times first..last), and each anchor as a bound between X - 1 (before T) and X (at T or later).
create or replace temp table elements as
select
    symbol,
    2 * first_trade_id as position,
    first_trade_id - 1 as id_before,
    last_trade_id + 1 as id_after,
    epoch_us(first_trade_time) as starts_us,
    epoch_us(last_trade_time) as ends_us
from minute_trades
union all
select distinct symbol, 2 * trade_id - 1, trade_id - 1, trade_id, epoch_us(anchor_time) - 1, epoch_us(anchor_time) from anchors;

-- Spans: ids missing between elements, or inside a minute, that are not exchange-side holes.
create or replace temp table spans as
with ordered as (
    select
        symbol,
        id_before,
        starts_us,
        max(id_after) over before_it as first_unknown_id,
        max(ends_us) over before_it as unknown_from_us
    from elements
    window before_it as (partition by symbol order by position, ends_us rows between unbounded preceding and 1 preceding)
),
gaps as (
    select
        symbol,
        first_unknown_id as first_id,
        id_before as last_id,
        id_before - first_unknown_id + 1 as missing,
        unknown_from_us as from_us,
        starts_us as to_us
    from ordered
    where id_before >= first_unknown_id
    union all
    select
        symbol,
        first_trade_id + 1,
        last_trade_id - 1,
        last_trade_id - first_trade_id + 1 - trade_count,
        epoch_us(first_trade_time),
        epoch_us(last_trade_time)
    from minute_trades
    where last_trade_id - first_trade_id + 1 > trade_count
)
select gaps.*
from gaps
where gaps.missing > (
    select count(*) from holes
    where holes.symbol = gaps.symbol and holes.trade_id between gaps.first_id and gaps.last_id
);

create or replace temp table known as
select symbol, min(starts_us) as first_us, max(ends_us) as last_us from elements group by symbol;

-- Coverage: the last trade, the stream's heartbeat, the end of the last complete repair window.
create or replace temp table coverage as
select symbol, max(covered_us) + 1 as closed_until_us
from (
    select symbol, max(epoch_us(trade_time)) as covered_us from trades group by symbol
    union all
    select symbol, max(epoch_us(updated_at)) from raw.stream_status group by symbol
    union all
    select symbol, max(epoch_us(window_end)) - 1 from raw.completeness where missing = 0 group by symbol
) as covered
group by symbol;

create or replace temp table minutes as
with series as (
    select symbol, unnest(generate_series(min(open_us), (max(closed_until_us) - 1) // 60000000 * 60000000, 60000000)) as open_us
    from minute_trades inner join coverage using (symbol)
    group by symbol
),
judged as (
    select
        series.symbol,
        series.open_us,
        minute_trades.* exclude (symbol, open_us),
        series.open_us + 60000000 <= coverage.closed_until_us as is_closed,
        known.first_us < series.open_us
            and not exists (
                select 1 from spans
                where spans.symbol = series.symbol and spans.from_us < series.open_us + 60000000
                    and spans.to_us >= series.open_us
            )
            and (
                (series.open_us + 60000000 > coverage.closed_until_us and minute_trades.trade_count > 0)
                or known.last_us >= series.open_us + 60000000
            ) as is_complete,
        count(minute_trades.close) over (partition by series.symbol order by series.open_us) as carry_group
    from series
    inner join coverage on coverage.symbol = series.symbol
    inner join known on known.symbol = series.symbol
    left join minute_trades on minute_trades.symbol = series.symbol and minute_trades.open_us = series.open_us
),
carried as (
    select
        *,
        max(close) over (partition by symbol, carry_group) as carried_close,
        max(last_trade_id) over (partition by symbol, carry_group) as carried_id
    from judged
)
-- An empty minute carries the close of the last trade before it: known only if no id is missing
-- between that trade and the minute's end.
select * replace (
    is_complete and (
        trade_count is not null
        or not exists (
            select 1 from spans
            where spans.symbol = carried.symbol and spans.first_id > carried.carried_id
                and spans.from_us < carried.open_us + 60000000
        )
    ) as is_complete
)
from carried;

create or replace table hand.candles_1m as
select
    symbol,
    make_timestamptz(open_us) as open_time,
    make_timestamptz(open_us + 59999000) as close_time,
    case when trade_count > 0 then open when is_complete then carried_close end as open,
    case when trade_count > 0 then high when is_complete then carried_close end as high,
    case when trade_count > 0 then low when is_complete then carried_close end as low,
    case when trade_count > 0 then close when is_complete then carried_close end as close,
    coalesce(volume, 0) as volume,
    coalesce(quote_volume, 0) as quote_volume,
    coalesce(taker_buy_volume, 0) as taker_buy_volume,
    coalesce(taker_buy_quote_volume, 0) as taker_buy_quote_volume,
    coalesce(trade_count, 0) as trade_count,
    first_trade_id,
    last_trade_id,
    last_trade_time,
    is_closed,
    is_complete
from minutes;

-- The larger intervals, from the 1m candles: complete when every minute of them so far is.
create or replace temp table widths as select * from (values {intervals}) as widths(name, width_us);

create or replace temp table rolled as
with buckets as (
    select
        widths.name,
        widths.width_us,
        minutes.symbol,
        minutes.open_us // widths.width_us * widths.width_us as bucket_us,
        minutes.*
    from minutes cross join widths
),
grouped as (
    select
        name,
        symbol,
        bucket_us,
        any_value(width_us) as width_us,
        min_by(open, open_us) filter (where trade_count > 0) as open,
        max(high) as high,
        min(low) as low,
        max_by(close, open_us) filter (where trade_count > 0) as close,
        cast(sum(coalesce(volume, 0)) as decimal(38, 8)) as volume,
        cast(sum(coalesce(quote_volume, 0)) as decimal(38, 16)) as quote_volume,
        cast(sum(coalesce(taker_buy_volume, 0)) as decimal(38, 8)) as taker_buy_volume,
        cast(sum(coalesce(taker_buy_quote_volume, 0)) as decimal(38, 16)) as taker_buy_quote_volume,
        coalesce(sum(trade_count), 0) as trade_count,
        min(first_trade_id) as first_trade_id,
        max(last_trade_id) as last_trade_id,
        max(last_trade_time) as last_trade_time,
        max(case when is_closed then open_us + 60000000 end) as closed_until_us,
        bool_and(is_complete) and min(open_us) = bucket_us as is_complete
    from buckets
    group by name, symbol, bucket_us
)
select
    *,
    bucket_us + width_us <= max(closed_until_us) over (partition by name, symbol) as is_closed,
    max(close) over (partition by name, symbol, carry_group) as carried_close
from (select *, count(close) over (partition by name, symbol order by bucket_us) as carry_group from grouped);

-- {each_interval}: run once per larger interval, {name} replaced.
create or replace table hand.candles_{name} as
select
    symbol,
    make_timestamptz(bucket_us) as open_time,
    make_timestamptz(bucket_us + width_us - 1000) as close_time,
    case when trade_count > 0 then open when is_complete then carried_close end as open,
    case when trade_count > 0 then high when is_complete then carried_close end as high,
    case when trade_count > 0 then low when is_complete then carried_close end as low,
    case when trade_count > 0 then close when is_complete then carried_close end as close,
    volume,
    quote_volume,
    taker_buy_volume,
    taker_buy_quote_volume,
    trade_count,
    first_trade_id,
    last_trade_id,
    last_trade_time,
    is_closed,
    is_complete
from rolled
where name = '{name}';
