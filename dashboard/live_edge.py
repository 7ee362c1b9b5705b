"""The speed layer (docs/architecture.md, "The live edge", part 3): candles up to the stream's last
flush, not the warehouse's last publish.

The warehouse publishes candles tens of seconds after a trade. On every read of candles the page
takes the symbol's *frontier* from the marts (its last 1m candle with trades: ``queries.Frontier``),
reads the lake's trades with ids above the frontier's last trade id, builds their candles with the
marts' rules and merges them onto the marts' candles from the frontier on:

- Files: only the symbol's current and previous UTC hour partitions are listed (from the frontier's
  hour on when the warehouse is further behind). A trade file's key names its first and last id
  (``<source>-<first_id>-<last_id>.parquet``), so a file entirely at or below the frontier is
  skipped unread. Two stream writers overlap: rows are deduplicated by trade id.
- 1m candles, as the marts (include/dbt/macros/candles.sql): open and close are the first and last
  trade by id, high and low the extremes, the taker bought when the buyer was not the maker, quote
  volume sums the lake's ``quote_quantity`` (price x quantity, exact at 16 decimals). Exact decimals
  throughout: DuckDB SQL over Arrow, never a float. The frontier's minute is the marts' partial
  aggregate merged with the new trades (its open from the marts, its close from the newest trade).
- Completeness by trade id (the marts' rule): a minute is complete when a point lies before it, no
  run of missing ids touches it, and, when it is closed or has no trade, a point lies at or after
  its end. Ids missing between the frontier and the new trades, or among them, make every minute
  from the trade before the missing ids to the trade after them incomplete. A minute without a trade
  is flat at the previous close only when complete; else its prices are null, never a flat candle.
- Closed: once a later trade or the stream's heartbeat (``include/lake/heartbeats.py``, written at every
  flush) covers the bucket's last microsecond, or the marts already said so.
- Larger intervals: the frontier's bucket of the interval and every one after it are rolled up from
  1m candles (the marts' ones of that bucket before the frontier minute, then the merged ones) with
  the marts' roll-up rules; the marts' candles before it are kept.
- A row made here has ``built_at`` null: the warehouse has not built it yet.

Once the warehouse has loaded those trades, the marts hold the same candles and the lake holds nothing
above the frontier: the page then shows the marts unchanged. The speed layer does not read what only
the warehouse knows (the repair ledger's anchors, exchange-side holes of gap fills); where those
would make a minute complete, it says incomplete until the marts take over, never the reverse.

It reads the lake the same way whatever the warehouse (``Settings.lake_url``), so it serves the
DuckDB snapshot and Snowflake alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from dashboard.queries import (
    ARROW_BATCH_ROWS,
    Frontier,
    MartsEdge,
    bucket_start,
    memory_cursor,
)
from include.candles import BY_NAME, CANDLE_SCHEMA
from include.lake.heartbeats import BodyCache, read_status
from include.lake.keys import hour_prefix, ids_of_key
from include.lake.store import ObjectStore
from include.lake.trades import TRADE_SCHEMA, batch_keys, read_again_if_vanished, read_symbol_rows, read_table
from include.timeutil import HOUR_US, MINUTE_US, hour_start_us, to_us

TRADE_COLUMNS = ("trade_id", "price", "quantity", "quote_quantity", "trade_time", "is_buyer_maker", "source")
# A trade stamped by the exchange's clock a little ahead of ours, at an hour's turn, is still read.
CLOCK_SKEW = timedelta(minutes=1)
# A warehouse further behind than this: the live edge is off (every refresh would list and merge a day
# of the lake, every 2 s), and the page says so; the health panel shows the warehouse's delay.
MAX_BEHIND = timedelta(hours=24)


@dataclass(frozen=True)
class LakeEdge:
    """What the lake holds beyond the marts' frontier."""

    trades: pa.Table  # the trades above the frontier id, one row per id (TRADE_COLUMNS, source excepted)
    heartbeat: datetime | None  # the stream's last flush for the symbol (its heartbeat's updated_at)
    files_listed: int
    files_read: int


@dataclass(frozen=True)
class LiveCandles:
    """The page's candles with the live edge merged: the view's interval, and 1m for the 24 h ticker."""

    candles: pa.Table  # CANDLE_SCHEMA, the view's [start, end), its newest ``limit``
    minutes: pa.Table  # CANDLE_SCHEMA, 1m, a day and more up to the newest minute
    new_trades: int  # trades above the frontier merged in (0: the marts' candles unchanged)
    off: str | None = None  # why the live edge was not read, when it was not


# The heartbeats this process read, per lake: each refresh reads only those that changed since.
_HEARTBEATS: dict[str, BodyCache] = {}


def heartbeat_of(lake: ObjectStore, symbol: str) -> datetime | None:
    """The ``updated_at`` of the symbol's newest stream heartbeat in the lake; None when there is none."""
    status = read_status(lake, symbol, _HEARTBEATS.setdefault(lake.url, {}))
    updated = status.get("updated_at") if status is not None else None
    return datetime.fromisoformat(updated).astimezone(UTC) if isinstance(updated, str) else None


def _hours_to_list(frontier_time: datetime, now: datetime) -> range:
    """Start (µs) of every hour partition that can hold trades above the frontier: the previous and the
    current hour, or from the frontier's hour on when it is older."""
    current = hour_start_us(to_us(now + CLOCK_SKEW))
    first = min(hour_start_us(to_us(now)) - HOUR_US, hour_start_us(to_us(frontier_time)))
    return range(first, max(current, hour_start_us(to_us(frontier_time))) + 1, HOUR_US)


def read_lake_edge(lake: ObjectStore, frontier: Frontier, now: datetime) -> LakeEdge:
    """The symbol's trades in the lake with ids above the frontier's, deduplicated, by id; and its heartbeat.

    A file listed and gone before it is read was compacted or split, into files written before it was
    deleted: everything is listed and read again (``read_again_if_vanished``)."""
    return read_again_if_vanished(lambda: _read_lake_edge(lake, frontier, now))


def _read_lake_edge(lake: ObjectStore, frontier: Frontier, now: datetime) -> LakeEdge:
    tables, listed = [], 0
    # The stream's batches not split yet, listed first (what the split takes away is then in a file
    # listed below): trades above the frontier's id are at or after its time.
    batches = batch_keys(lake, to_us(frontier.last_trade_time))
    for hour in _hours_to_list(frontier.last_trade_time, now):
        for info in lake.list(hour_prefix(frontier.symbol, hour)):
            ids = ids_of_key(info.key)
            listed += 1
            if ids is None or ids[1] <= frontier.last_trade_id:
                continue  # every trade of it is in the marts already
            table = read_table(lake.get(info.key), TRADE_COLUMNS)
            tables.append(table.filter(pc.greater(table["trade_id"], frontier.last_trade_id)))
    for key in batches:
        listed += 1
        table = read_symbol_rows(lake, key, frontier.symbol, TRADE_COLUMNS)
        tables.append(table.filter(pc.greater(table["trade_id"], frontier.last_trade_id)))
    trades = _one_per_id(tables)
    return LakeEdge(trades, heartbeat_of(lake, frontier.symbol), listed, len(tables))


def _one_per_id(tables: list[pa.Table]) -> pa.Table:
    """One row per trade id, by id: the same trade from two writers (or a stream and its backfill) once."""
    columns = [name for name in TRADE_COLUMNS if name != "source"]
    if not tables:
        return TRADE_SCHEMA.empty_table().select(columns)
    cursor = memory_cursor()
    try:
        cursor.register("lake_rows", pa.concat_tables(tables))
        return cursor.sql(
            f"select distinct on (trade_id) {', '.join(columns)} from lake_rows order by trade_id, source"
        ).to_arrow_table(ARROW_BATCH_ROWS)
    finally:
        cursor.close()


# Candles of several parts as one bucket, the marts' roll-up rules: prices from the parts with trades
# (open from the first trade, close from the last: ids follow time), volumes and counts summed.
_ROLLED_UP = """
        min_by(open, first_trade_id) filter (where trade_count > 0) as open,
        max(high) filter (where trade_count > 0) as high,
        min(low) filter (where trade_count > 0) as low,
        max_by(close, last_trade_id) filter (where trade_count > 0) as close,
        sum(volume) as volume,
        sum(quote_volume) as quote_volume,
        sum(taker_buy_volume) as taker_buy_volume,
        sum(taker_buy_quote_volume) as taker_buy_quote_volume,
        cast(sum(trade_count) as bigint) as trade_count,
        min(first_trade_id) as first_trade_id,
        max(last_trade_id) as last_trade_id,
        max(last_trade_time) as last_trade_time,
        max(last_loaded_at) as last_loaded_at"""

# The 1m candles from the frontier's minute on. Tables: new_trades (the lake's trades above the
# frontier), marts_tail (the marts' 1m candles from the frontier's minute on). Points are the
# frontier's trade and the new trades; two consecutive points with ids missing between them make a
# span, and a span touches every minute from the one before the missing ids to the one after.
_MINUTES_SQL = """
with
new_minutes as (
    select
        make_timestamptz(epoch_us(trade_time) - epoch_us(trade_time) % 60000000) as open_time,
        min_by(price, trade_id) as open,
        max(price) as high,
        min(price) as low,
        max_by(price, trade_id) as close,
        sum(quantity) as volume,
        sum(quote_quantity) as quote_volume,
        sum(case when is_buyer_maker then 0 else quantity end) as taker_buy_volume,
        sum(case when is_buyer_maker then 0 else quote_quantity end) as taker_buy_quote_volume,
        count(*) as trade_count,
        min(trade_id) as first_trade_id,
        max(trade_id) as last_trade_id,
        max(trade_time) as last_trade_time,
        cast(null as timestamptz) as last_loaded_at
    from new_trades
    group by 1
),
parts as (
    select open_time, open, high, low, close, volume, quote_volume, taker_buy_volume, taker_buy_quote_volume,
        trade_count, first_trade_id, last_trade_id, last_trade_time, last_loaded_at
    from marts_tail
    where trade_count > 0
    union all
    select * from new_minutes
),
merged as (
    -- the frontier's minute: the marts' trades and the new ones, as one bucket
    select open_time, ROLLED_UP
    from parts
    group by open_time
),
points as (
    select $frontier_id as trade_id, $frontier_time as trade_time
    union all
    select trade_id, trade_time from new_trades
),
spans as (
    select previous_time as span_start, trade_time as span_end
    from (
        select
            trade_id,
            trade_time,
            lag(trade_id) over (order by trade_id) as previous_id,
            lag(trade_time) over (order by trade_id) as previous_time
        from points
    ) as consecutive
    where trade_id - previous_id > 1
),
series as (
    select make_timestamptz(unnest(generate_series(epoch_us($first_open), epoch_us($last_open), 60000000)))
        as open_time
),
judged as (
    select
        series.open_time,
        merged.* exclude (open_time),
        coalesce(merged.trade_count, 0) > 0 as has_trades,
        coalesce(marts_tail.is_closed, false) or epoch_us(series.open_time) + 60000000 <= $closed_until_us
            as is_closed,
        series.open_time > $first_open or $frontier_known as point_before,
        not exists (
            select 1 from spans
            where spans.span_start < series.open_time + interval 1 minute and spans.span_end >= series.open_time
        ) as untouched,
        $last_point_us >= epoch_us(series.open_time) + 60000000 or (series.open_time = $first_open and $after_known)
            as point_after
    from series
    left join merged on merged.open_time = series.open_time
    left join marts_tail on marts_tail.open_time = series.open_time
),
completed as (
    select
        *,
        point_before and untouched and (point_after or (has_trades and not is_closed)) as is_complete,
        last_value(close ignore nulls) over (order by open_time rows between unbounded preceding and current row)
            as carried_close
    from judged
)
select
    $symbol as symbol,
    open_time,
    open_time + interval 59999 millisecond as close_time,
    case when has_trades then open when is_complete then carried_close end as open,
    case when has_trades then high when is_complete then carried_close end as high,
    case when has_trades then low when is_complete then carried_close end as low,
    case when has_trades then close when is_complete then carried_close end as close,
    coalesce(volume, 0) as volume,
    coalesce(quote_volume, 0) as quote_volume,
    coalesce(taker_buy_volume, 0) as taker_buy_volume,
    coalesce(taker_buy_quote_volume, 0) as taker_buy_quote_volume,
    coalesce(trade_count, 0) as trade_count,
    first_trade_id,
    last_trade_id,
    last_trade_time,
    is_closed,
    is_complete,
    last_loaded_at,
    cast(null as timestamptz) as built_at
from completed
order by open_time
""".replace("ROLLED_UP", _ROLLED_UP.strip())

# The buckets of a larger interval from 1m candles (table minutes: the frontier bucket's minutes on),
# as the marts roll them up: prices from the minutes with trades; complete when every minute of the
# bucket so far is there and complete; closed when the last closed minute reaches its end.
_ROLL_UP_SQL = """
with
buckets as (
    select
        make_timestamptz(epoch_us(open_time) - epoch_us(open_time) % $width_us) as open_time,
        ROLLED_UP,
        count(*) as minutes_present,
        bool_and(coalesce(is_complete, false)) as minutes_complete
    from minutes
    group by 1
),
judged as (
    select
        *,
        epoch_us(open_time) + $width_us <= $closed_until_us as is_closed,
        minutes_complete and minutes_present
            = (least(epoch_us(open_time) + $width_us, $last_minute_us + 60000000) - epoch_us(open_time)) // 60000000
            as is_complete,
        last_value(close ignore nulls) over (order by open_time rows between unbounded preceding and current row)
            as carried_close
    from buckets
)
select
    $symbol as symbol,
    open_time,
    make_timestamptz(epoch_us(open_time) + $width_us - 1000) as close_time,
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
    coalesce(is_closed, false) as is_closed,
    is_complete,
    last_loaded_at,
    cast(null as timestamptz) as built_at
from judged
order by open_time
""".replace("ROLLED_UP", _ROLLED_UP.strip())


def _frontier_known(frontier: Frontier) -> bool:
    """Whether, by what the marts knew, a point lies before the frontier's minute and no run of missing
    ids touches it (the first two conditions of completeness, which new trades cannot change).

    A minute the marts judged while open had only those two to meet; one they judged closed also
    needed a point after it, which they may have lacked: then the two are read from its ids (the ids of
    the minute with trades before it ended just before this one's first, and none is missing inside)."""
    if frontier.is_complete or not frontier.is_closed:
        return frontier.is_complete
    ids_inside = frontier.last_trade_id - frontier.first_trade_id + 1
    return frontier.previous_last_trade_id == frontier.first_trade_id - 1 and ids_inside == frontier.trade_count


def _run(sql: str, tables: dict[str, pa.Table], params: dict[str, object]) -> pa.Table:
    cursor = memory_cursor()
    try:
        cursor.execute("set TimeZone = 'UTC'")
        for name, table in tables.items():
            cursor.register(name, table)
        return cursor.sql(sql, params=params).to_arrow_table(ARROW_BATCH_ROWS).cast(CANDLE_SCHEMA)
    finally:
        cursor.close()


def live_minutes(frontier: Frontier, marts_minutes: pa.Table, edge: LakeEdge) -> pa.Table:
    """1m candles from the frontier's minute on, the lake's new trades merged onto the marts' (CANDLE_SCHEMA).

    ``marts_minutes``: the marts' 1m candles of the symbol holding at least those from the frontier's
    minute on. Up to the bucket of the last trade or heartbeat, whichever is later."""
    tail = marts_minutes.filter(pc.greater_equal(marts_minutes["open_time"], pa.scalar(frontier.open_time, _ts())))
    trade_times = edge.trades["trade_time"]
    last_trade = pc.max(trade_times).as_py() if len(trade_times) else None
    covered = max(moment for moment in (last_trade, edge.heartbeat, frontier.last_trade_time) if moment is not None)
    last_open = max([bucket_start(covered, "1m"), *tail["open_time"].to_pylist()])
    params = {
        "symbol": frontier.symbol,
        "frontier_id": frontier.last_trade_id,
        "frontier_time": frontier.last_trade_time,
        "first_open": frontier.open_time,
        "last_open": last_open,
        "closed_until_us": to_us(covered) + 1,  # the marts' rule: its last microsecond covered
        "frontier_known": _frontier_known(frontier),
        "after_known": frontier.is_closed and frontier.is_complete,  # the marts knew a point after it
        "last_point_us": to_us(last_trade or frontier.last_trade_time),
    }
    return _run(_MINUTES_SQL, {"new_trades": edge.trades, "marts_tail": tail}, params)


def roll_up(symbol: str, minutes: pa.Table, interval: str) -> pa.Table:
    """Buckets of ``interval`` from 1m candles (oldest first, continuous), by the marts' roll-up rules."""
    closed = minutes.filter(minutes["is_closed"])["open_time"]
    closed_until = to_us(pc.max(closed).as_py()) + MINUTE_US if len(closed) else 0
    params = {
        "symbol": symbol,
        "width_us": BY_NAME[interval].length_us,
        "closed_until_us": closed_until,
        "last_minute_us": to_us(pc.max(minutes["open_time"]).as_py()),
    }
    return _run(_ROLL_UP_SQL, {"minutes": minutes}, params)


def _ts() -> pa.DataType:
    return CANDLE_SCHEMA.field("open_time").type


def _before(table: pa.Table, moment: datetime) -> pa.Table:
    return table.filter(pc.less(table["open_time"], pa.scalar(moment, _ts())))


def _in_view(candles: pa.Table, marts: MartsEdge) -> pa.Table:
    """The candles opening in the view's [start, end), its newest ``limit``."""
    opened = candles["open_time"]
    inside = pc.and_(
        pc.greater_equal(opened, pa.scalar(marts.start, _ts())), pc.less(opened, pa.scalar(marts.end, _ts()))
    )
    chosen = candles.filter(inside)
    return chosen.slice(max(0, chosen.num_rows - marts.limit))


def merge(marts: MartsEdge, minutes_live: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(the view's candles, the 1m candles) with ``minutes_live`` (from the frontier's minute on) merged."""
    frontier = marts.frontier
    assert frontier is not None
    minutes = pa.concat_tables([_before(marts.minutes, frontier.open_time), minutes_live])
    if marts.interval == "1m":
        rebuilt, first_open = minutes_live, frontier.open_time
    else:
        first_open = bucket_start(frontier.open_time, marts.interval)
        from_bucket = minutes.filter(pc.greater_equal(minutes["open_time"], pa.scalar(first_open, _ts())))
        rebuilt = roll_up(marts.symbol, from_bucket, marts.interval)
    candles = pa.concat_tables([_before(marts.candles, first_open), rebuilt])
    return _in_view(candles, marts), minutes


def with_live_edge(marts: MartsEdge, lake: ObjectStore, now: datetime | None = None) -> LiveCandles:
    """The marts' candles with the lake's trades above the frontier merged in (``marts`` from
    ``MarketQueries.edge``); the marts' candles as they are when the lake has nothing above it."""
    unchanged = LiveCandles(marts.candles, marts.minutes, 0)
    if marts.frontier is None:
        return unchanged
    now = now or datetime.now(UTC)
    if now - marts.frontier.last_trade_time > MAX_BEHIND:
        behind = f"the warehouse's newest trade is more than {MAX_BEHIND // timedelta(hours=1)} h old"
        return replace(unchanged, off=f"{behind}: the live edge waits for it to catch up")
    edge = read_lake_edge(lake, marts.frontier, now)
    if edge.trades.num_rows == 0:
        return unchanged
    candles, minutes = merge(marts, live_minutes(marts.frontier, marts.minutes, edge))
    return replace(unchanged, candles=candles, minutes=minutes, new_trades=edge.trades.num_rows)
