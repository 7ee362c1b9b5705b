"""Every read the dashboard makes, in one module: parametrised SQL over allowlisted symbols and intervals.

No SQL text is ever built from a caller's value. A symbol must look like a symbol and be one of
the symbols the marts hold; an interval must be one of include/candles.py's ``INTERVALS``; a range must be two aware
datetimes in order; only then does a query run, with every value bound as a parameter. Table
names come from the constants below alone. Anything else raises ``QueryRefused`` naming the value.

Two sources, the same answers:
- DuckDB: the published snapshot (include/warehouse/snapshot.py), never ``warehouse.duckdb``,
  whose write lock a load holds every few seconds. Each call opens the file read-only and closes
  it: a call after a publish reads the new file, a call under way keeps reading the old one.
- Snowflake: ``run(sql, params)`` (the app's ``st.connection("snowflake").query`` with the reader
  role) over marts.candles_*, raw.stream_status, raw.completeness, marts.candle_audit, marts.alerts
  and marts.alert_deliveries (grants: Snowflake setup V003, V007). The alerts' tables exist once an
  evaluation has made them (and in snapshots published since): until then ``alerts`` says so.

The SQL is one text per query for both, but for what ``include.warehouse.shared.Dialect`` names (the
placeholder: "?" for DuckDB, "%s" for Snowflake's connector in its default paramstyle, which
``st.connection`` uses; the timestamp type), the table names, and one more difference: on
Snowflake the decimal columns are selected as text (``cast(... as varchar)``), because the
connector's ``fetch_pandas_all`` turns NUMBER(38, 8) into float64 unless the connection sets
``arrow_number_to_decimal``; text is exact either way and becomes ``pa.decimal128`` here.
Results are pyarrow tables (decimals as ``pa.decimal128``, times as ``pa.timestamp("us", "UTC")``)
or frozen dataclasses of Decimals and aware UTC datetimes; nothing passes through a float but
the heartbeat's lag in seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from include.alerts.model import PIPELINE, Alert
from include.alerts.store import ALERT_COLUMNS
from include.binance.protocol import SYMBOL_PATTERN
from include.candles import BY_NAME, CANDLE_COLUMN_NAMES, CANDLE_SCHEMA, DECIMAL_COLUMNS, INTERVAL_NAMES
from include.warehouse.shared import DUCKDB, SNOWFLAKE, Dialect
from include.warehouse.snapshot import COPIED_TABLES, SNAPSHOT_TABLES

# The most candles one read returns, and so the most the chart loads and draws (the "max" range, a
# date range): 10,000, the scale the chart is built and benchmarked for (bench/dashboard_page.py).
MAX_CANDLES = 10_000
MAX_SYMBOL_LENGTH = 20  # Binance's symbols are far shorter
MISMATCHES_SHOWN = 50  # the newest audit mismatches listed in full
# The alerts shown: every open incident (a few at most; bounded all the same), and the newest alerts of
# the last day, so a page never loads a year of them.
ACTIVE_SHOWN = 200
RECENT_SHOWN = 50
RECENT_WINDOW = timedelta(hours=24)
_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)

_TS, _PRICE = CANDLE_SCHEMA.field("open_time").type, CANDLE_SCHEMA.field("close").type


class QueryRefused(ValueError):
    """A value the dashboard does not query with; the message names it."""


class NoData(Exception):
    """Nothing to show yet; the message says why and what to do."""


@dataclass(frozen=True)
class Ticker24h:
    """The 24 hours of 1m candles up to the newest one (the forming minute included), as Binance's ticker."""

    symbol: str
    last_price: Decimal  # the newest candle's close
    change: Decimal  # from the open of the window's first candle
    change_percent: Decimal  # 2 places, half-even
    high: Decimal
    low: Decimal
    volume: Decimal
    last_trade_time: datetime | None  # the newest trade of the window (None: its prices carried from before it)


@dataclass(frozen=True)
class SymbolFreshness:
    symbol: str
    last_closed_close_time: datetime | None  # None: no closed candle yet
    incomplete: int = 0  # closed 1m candles with trade ids missing
    incomplete_since: datetime | None = None  # the oldest of them opened then


@dataclass(frozen=True)
class Frontier:
    """A symbol's last 1m candle with trades in the marts: where the speed layer takes over
    (dashboard/live_edge.py; docs/architecture.md, "The live edge", part 3)."""

    symbol: str
    open_time: datetime
    first_trade_id: int
    last_trade_id: int  # the marts' newest trade of the symbol
    last_trade_time: datetime
    trade_count: int
    close: Decimal
    is_closed: bool
    is_complete: bool
    previous_last_trade_id: int | None  # the last trade of the 1m candle with trades before it


@dataclass(frozen=True)
class MartsEdge:
    """The marts' side of one chart refresh, read in one session: the interval's candles as ``candles``
    returns them, the symbol's frontier, and its 1m candles from the frontier's bucket of the interval
    or a day before the newest 1m candle, whichever is earlier."""

    symbol: str
    interval: str
    start: datetime
    end: datetime
    limit: int
    candles: pa.Table
    frontier: Frontier | None
    minutes: pa.Table


@dataclass(frozen=True)
class GapSummary:
    """Over the completeness ledger's windows: trades found missing, filled, exchange-side holes, still missing."""

    windows: int
    found: int  # expected - present_before: what the stream had not delivered
    filled: int
    holes: int  # ids the exchange itself does not have
    missing: int  # still missing after the fill: a later repair tries again


@dataclass(frozen=True)
class AuditMismatch:
    symbol: str
    interval: str
    open_time: datetime
    differences: str


@dataclass(frozen=True)
class AuditSummary:
    checked: int  # buckets compared with the exchange
    matched: int
    mismatches: list[AuditMismatch]  # the newest MISMATCHES_SHOWN of them
    mismatched: int = 0  # all of them


@dataclass(frozen=True)
class StreamState:
    symbol: str
    connection: str | None  # the stream connection's number, as text
    updated_at: datetime
    lag_seconds: float | None
    state: str | None = None  # connected, restarting, failed, stopped


@dataclass(frozen=True)
class Health:
    exchange: str | None
    published_at: datetime | None  # the snapshot's; None on Snowflake (read live)
    last_load_at: datetime | None
    marts_loaded_at: datetime | None  # the newest load the marts include
    freshness: list[SymbolFreshness]
    gaps: GapSummary
    audit: AuditSummary
    streams: list[StreamState]


@dataclass(frozen=True)
class Delivery:
    """One channel's delivery of one event of an alert (a row of the outbox, marts.alert_deliveries)."""

    channel: str
    event: str  # fired, or resolved (an incident's end)
    attempts: int
    delivered_at: datetime | None  # None: not delivered (yet, or given up after the delivery horizon)
    last_error: str | None
    last_attempt_at: datetime


@dataclass(frozen=True)
class AlertHistory:
    """An alert (its value exact: a Decimal of the stored text) and every delivery of it so far."""

    alert: Alert
    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True)
class AlertsOverview:
    """The open pipeline incidents (all, newest first) and the alerts fired since ``since`` (the newest
    ``RECENT_SHOWN``), each with its deliveries. ``evaluated`` is False while the warehouse has no
    alerts table: no evaluation has run yet."""

    since: datetime
    active: list[AlertHistory]
    recent: list[AlertHistory]
    evaluated: bool = True


# A query: its result's columns and types, and its SQL with {placeholders} for the table names,
# the parameter ("{p}"), the timestamp type ("{ts}") and each decimal column ("{d:name}").
Fetch = Callable[[str, Sequence[object], pa.Schema], pa.Table]


@dataclass(frozen=True)
class _Source:
    dialect: Dialect
    tables: Mapping[str, str]  # logical name -> the name in SQL
    decimals_as_text: bool
    session: Callable[[], contextlib.AbstractContextManager[Fetch]]
    exchange: str | None = None  # the EXCHANGE setting, where no pipeline row names it (Snowflake)

    def sql(self, template: str, decimals: Sequence[str] = ()) -> str:
        columns = {
            f"d_{name}": f"cast({name} as varchar) as {name}" if self.decimals_as_text else name for name in decimals
        }
        return template.format(p=self.dialect.placeholder, ts=self.dialect.timestamp_type, **self.tables, **columns)


_CANDLE_SELECT = ", ".join(f"{{d_{name}}}" if name in DECIMAL_COLUMNS else name for name in CANDLE_COLUMN_NAMES)
_CANDLES_SQL = (
    f"select * from (select {_CANDLE_SELECT} from {{table}} where symbol = {{p}} "
    "and open_time >= cast({p} as {ts}) and open_time < cast({p} as {ts}) "
    "order by open_time desc limit {p}) newest order by open_time"
)
_MINUTES_SQL = (
    f"select {_CANDLE_SELECT} from {{candles_1m}} where symbol = {{p}} and open_time >= cast({{p}} as {{ts}}) "
    "order by open_time"
)
_SYMBOLS_SQL = "select distinct symbol from {candles_1m} order by symbol"
_SYMBOL_SCHEMA = pa.schema([("symbol", pa.string())])
_FRESHNESS_SQL = (
    "select symbol, max(case when is_closed then close_time end) as last_closed_close_time, "
    "count(case when is_closed and not coalesce(is_complete, false) then 1 end) as incomplete, "
    "min(case when is_closed and not coalesce(is_complete, false) then open_time end) as incomplete_since "
    "from {candles_1m} group by symbol order by symbol"
)
_FRESHNESS_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("last_closed_close_time", _TS),
        ("incomplete", pa.int64()),
        ("incomplete_since", _TS),
    ]
)
# The frontier: the symbol's two newest 1m candles with trades (the second gives the id before it).
_FRONTIER_SQL = (
    "select open_time, first_trade_id, last_trade_id, last_trade_time, trade_count, {d_close}, is_closed, "
    "is_complete from {candles_1m} where symbol = {p} and trade_count > 0 order by open_time desc limit 2"
)
_FRONTIER_SCHEMA = pa.schema(
    [
        ("open_time", _TS),
        ("first_trade_id", pa.int64()),
        ("last_trade_id", pa.int64()),
        ("last_trade_time", _TS),
        ("trade_count", pa.int64()),
        ("close", _PRICE),
        ("is_closed", pa.bool_()),
        ("is_complete", pa.bool_()),
    ]
)
_NEWEST_MINUTE_SQL = "select max(open_time) as open_time from {candles_1m} where symbol = {p}"
_NEWEST_MINUTE_SCHEMA = pa.schema([("open_time", _TS)])
# The status tables' exchange column is the lake's partition (include/lake/keys.py EXCHANGE: always
# "binance", the sandbox speaking Binance's protocol), not the EXCHANGE setting the pipeline row
# names: filtering on the setting hid every heartbeat and gap of a sandbox pipeline.
_GAPS_SQL = (
    "select count(*) as windows, coalesce(sum(expected - present_before), 0) as found, "
    "coalesce(sum(filled), 0) as filled, coalesce(sum(hole_count), 0) as holes, "
    "coalesce(sum(missing), 0) as missing from {completeness}"
)
_GAPS_SCHEMA = pa.schema([(name, pa.int64()) for name in ("windows", "found", "filled", "holes", "missing")])
_AUDIT_COUNTS_SQL = (
    "select count(*) as checked, count(case when status = 'match' then 1 end) as matched, "
    "count(case when status = 'mismatch' then 1 end) as mismatched from {candle_audit}"
)
_AUDIT_COUNTS_SCHEMA = pa.schema([(name, pa.int64()) for name in ("checked", "matched", "mismatched")])
_MISMATCHES_SQL = (
    "select symbol, interval, open_time, differences from {candle_audit} where status = 'mismatch' "
    "order by audited_at desc, open_time desc, symbol, interval limit {p}"
)
_MISMATCH_SCHEMA = pa.schema(
    [("symbol", pa.string()), ("interval", pa.string()), ("open_time", _TS), ("differences", pa.string())]
)
_STREAMS_SQL = "select symbol, connection, updated_at, lag_seconds from {stream_status} order by symbol, exchange"
_STREAMS_SCHEMA = pa.schema(
    [("symbol", pa.string()), ("connection", pa.string()), ("updated_at", _TS), ("lag_seconds", pa.float64())]
)
_PIPELINE_SQL = "select exchange, published_at, last_load_at, marts_loaded_at from {pipeline}"
_PIPELINE_SCHEMA = pa.schema(
    [("exchange", pa.string()), ("published_at", _TS), ("last_load_at", _TS), ("marts_loaded_at", _TS)]
)
# Snowflake has no pipeline row: the exchange is the EXCHANGE setting (the heartbeats' exchange column
# is the lake's partition, always "binance", so it cannot tell the sandbox), the last load the newest
# status refresh (every load refreshes the status tables), the marts' load their newest candle's.
_LIVE_PIPELINE_SQL = (
    "select cast({p} as varchar) as exchange, "
    "cast(null as {ts}) as published_at, "
    "(select max(loaded_at) from (select loaded_at from {stream_status} "
    "union all select loaded_at from {completeness}) refreshes) as last_load_at, "
    "(select max(last_loaded_at) from {candles_1m}) as marts_loaded_at"
)

_ALERT_SCHEMA = pa.schema(
    [
        (name, _TS if name in ("event_time", "open_time", "fired_at", "resolved_at") else pa.string())
        for name in ALERT_COLUMNS
    ]
)
_ALERT_SELECT = ", ".join(ALERT_COLUMNS)
# Whether a table exists in the database read (the snapshot's attachment, or Snowflake's database):
# a snapshot published before the alerts' tables were, or a warehouse no evaluation has run on, has none.
_TABLE_EXISTS_SQL = (
    "select count(*) as found from information_schema.tables where lower(table_catalog) = lower(current_database()) "
    "and lower(table_schema) = {p} and lower(table_name) = {p}"
)
_TABLE_EXISTS_SCHEMA = pa.schema([("found", pa.int64())])
_ACTIVE_ALERTS_SQL = (
    f"select {_ALERT_SELECT} from {{alerts}} where kind = {{p}} and resolved_at is null "
    "order by fired_at desc, alert_id limit {p}"
)
_RECENT_ALERTS_SQL = (
    f"select {_ALERT_SELECT} from {{alerts}} where fired_at >= cast({{p}} as {{ts}}) "
    "order by fired_at desc, alert_id limit {p}"
)
_DELIVERY_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("channel", pa.string()),
        ("event", pa.string()),
        ("attempts", pa.int64()),
        ("delivered_at", _TS),
        ("last_error", pa.string()),
        ("last_attempt_at", _TS),
    ]
)
_DELIVERIES_SQL = (
    f"select {', '.join(_DELIVERY_SCHEMA.names)} from {{alert_deliveries}} where alert_id in ({{ids}}) "
    "order by alert_id, event, channel"
)

# Table names: the snapshot's own (its attachment is the session's database, USE), or where the
# snapshot copies them from.
_SNAPSHOT_TABLES = {name: f"main.{name}" for name in SNAPSHOT_TABLES}
_SNOWFLAKE_TABLES = {name: f"{schema}.{table}" for name, (schema, table, _) in COPIED_TABLES.items()}


def _shown(value: object) -> str:
    """A refused value as the message names it: its repr, cut short when long."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


# One in-memory DuckDB per process, a cursor per call: a new database costs ~40 ms of CPU to open,
# a cursor and an ATTACH a few. (duckdb.connect(path) is not used: it shares one cached instance
# per path in this process, so a reader still open would keep every new call on the old file.)
_READERS: list[duckdb.DuckDBPyConnection] = []
_READERS_LOCK = threading.Lock()
_ATTACHMENTS = itertools.count()
# Rows per Arrow batch: the default (a million) costs ~30 ms to allocate for a one-row result.
ARROW_BATCH_ROWS = 10_000


def memory_cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of this process's in-memory DuckDB (close it after use): the snapshot's reads attach to
    it, and the speed layer (dashboard/live_edge.py) computes candles in it."""
    with _READERS_LOCK:
        if not _READERS:
            _READERS.append(duckdb.connect(":memory:", config={"threads": 1}))
        return _READERS[0].cursor()


def _duckdb_session(path: Path) -> contextlib.AbstractContextManager[Fetch]:
    @contextlib.contextmanager
    def session() -> Iterator[Fetch]:
        if not path.is_file():
            raise NoData(
                f"No dashboard snapshot at {path} yet: the warehouse DAG publishes one after each transform. "
                "Start the pipeline (make up) and wait for its first load and transform."
            )
        cursor = memory_cursor()
        alias = f"snapshot_{next(_ATTACHMENTS)}"
        try:
            cursor.execute("set TimeZone = 'UTC'")
            # Attached afresh under a name of its own: this call reads the file published now, whole,
            # whatever file another call (another alias) still reads.
            cursor.execute(f"attach '{_quoted(path)}' as {alias} (read_only)")
            try:
                cursor.execute(f"use {alias}")

                def fetch(sql: str, params: Sequence[object], schema: pa.Schema) -> pa.Table:
                    relation = cursor.sql(sql, params=list(params))
                    return relation.to_arrow_table(ARROW_BATCH_ROWS).cast(schema)

                yield fetch
            finally:
                cursor.execute("use memory")  # a database in use cannot be detached
                cursor.execute(f"detach {alias}")
        finally:
            cursor.close()

    return session()


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _column(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """One result column as arrow, exactly: decimals from Decimal objects or their text, never floats."""
    present = next((value for value in values if value is not None and value == value), None)  # NaN != NaN
    if pa.types.is_decimal(kind) and isinstance(present, float):
        raise TypeError(f"a float where an exact {kind} is due: select the column as text")
    if pa.types.is_decimal(kind) and isinstance(present, str):
        return pa.array(values, pa.string(), from_pandas=True).cast(kind)
    return pa.array(values, kind, from_pandas=True)


def _arrow(result: Any, schema: pa.Schema) -> pa.Table:
    """What ``run`` returned (a pandas DataFrame or rows of tuples), by position, as ``schema``."""
    if hasattr(result, "iloc"):
        columns = [result.iloc[:, index].tolist() for index in range(len(schema))]
    else:
        rows = list(result)
        columns = [[row[index] for row in rows] for index in range(len(schema))]
    return pa.table([_column(values, field.type) for values, field in zip(columns, schema, strict=True)], schema=schema)


def _snowflake_session(run: Callable[[str, Sequence[object]], Any]) -> contextlib.AbstractContextManager[Fetch]:
    @contextlib.contextmanager
    def session() -> Iterator[Fetch]:
        yield lambda sql, params, schema: _arrow(run(sql, list(params)), schema)

    return session()


def _aware(name: str, moment: object) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise QueryRefused(f"{name} {_shown(moment)} is not a date and time with a time zone")
    return moment.astimezone(UTC)


def _range(start: object, end: object) -> tuple[datetime, datetime]:
    first = _EARLIEST if start is None else _aware("start", start)
    last = _LATEST if end is None else _aware("end", end)
    if not first < last:
        raise QueryRefused(
            f"the range from {first.isoformat()} to {last.isoformat()} is empty: start must be before end"
        )
    return first, last


class MarketQueries:
    """The dashboard's reads, from the published snapshot (DuckDB) or the marts (Snowflake)."""

    def __init__(self, source: _Source) -> None:
        self._source = source

    @classmethod
    def duckdb_snapshot(cls, path: Path) -> MarketQueries:
        return cls(_Source(DUCKDB, _SNAPSHOT_TABLES, False, lambda: _duckdb_session(path)))

    @classmethod
    def snowflake(cls, run: Callable[[str, Sequence[object]], Any], exchange: str) -> MarketQueries:
        """``run(sql, params)``: e.g. ``lambda sql, params: connection.query(sql, params=params, ttl=0)``;
        ``exchange``: the EXCHANGE setting, for the sandbox banner."""
        return cls(_Source(SNOWFLAKE, _SNOWFLAKE_TABLES, True, lambda: _snowflake_session(run), exchange))

    def symbols(self) -> list[str]:
        """Every symbol in the 1m candles, sorted: the symbol allowlist."""
        with self._source.session() as fetch:
            return self._symbols(fetch)

    def _symbols(self, fetch: Fetch) -> list[str]:
        return fetch(self._source.sql(_SYMBOLS_SQL), [], _SYMBOL_SCHEMA).column("symbol").to_pylist()

    def _checked_symbol(self, fetch: Fetch, symbol: object) -> str:
        if not isinstance(symbol, str) or len(symbol) > MAX_SYMBOL_LENGTH or not SYMBOL_PATTERN.match(symbol):
            raise QueryRefused(f"symbol {_shown(symbol)} is not a symbol like BTCUSDT")
        known = self._symbols(fetch)
        if not known:
            raise NoData("The warehouse holds no candles yet: they appear after the first load and transform.")
        if symbol not in known:
            raise QueryRefused(f"symbol {_shown(symbol)} is not in the marts (they hold {', '.join(known[:10])})")
        return symbol

    def candles(
        self,
        symbol: str,
        interval: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = MAX_CANDLES,
    ) -> pa.Table:
        """The newest ``limit`` candles opening in [start, end), oldest first (``CANDLE_SCHEMA``)."""
        self._check_interval_and_limit(interval, limit)
        first, last = _range(start, end)
        with self._source.session() as fetch:
            return self._candles(fetch, self._checked_symbol(fetch, symbol), interval, first, last, limit)

    @staticmethod
    def _check_interval_and_limit(interval: object, limit: object) -> None:
        if not isinstance(interval, str) or interval not in BY_NAME:
            raise QueryRefused(f"interval {_shown(interval)} is not one of {', '.join(INTERVAL_NAMES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CANDLES:
            raise QueryRefused(f"limit {_shown(limit)} is not a whole number from 1 to {MAX_CANDLES}")

    def _candles(
        self, fetch: Fetch, symbol: str, interval: str, first: datetime, last: datetime, limit: int
    ) -> pa.Table:
        sql = self._source.sql(_CANDLES_SQL.replace("{table}", "{" + BY_NAME[interval].mart + "}"), DECIMAL_COLUMNS)
        return fetch(sql, [symbol, first.isoformat(), last.isoformat(), limit], CANDLE_SCHEMA)

    def edge(
        self,
        symbol: str,
        interval: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = MAX_CANDLES,
    ) -> MartsEdge:
        """What the speed layer merges onto, read in one session: ``candles(...)``, the frontier, and the
        1m candles it rebuilds the frontier's bucket from (and ``ticker_of`` reads)."""
        self._check_interval_and_limit(interval, limit)
        first, last = _range(start, end)
        with self._source.session() as fetch:
            checked = self._checked_symbol(fetch, symbol)
            candles = self._candles(fetch, checked, interval, first, last, limit)
            frontier = self._frontier(fetch, checked)
            newest = fetch(self._source.sql(_NEWEST_MINUTE_SQL), [checked], _NEWEST_MINUTE_SCHEMA)[0][0].as_py()
            since = newest - timedelta(days=1)
            if frontier is not None:
                since = min(since, bucket_start(frontier.open_time, interval))
            sql = self._source.sql(_MINUTES_SQL, DECIMAL_COLUMNS)
            minutes = fetch(sql, [checked, since.isoformat()], CANDLE_SCHEMA)
        return MartsEdge(checked, interval, first, last, limit, candles, frontier, minutes)

    def _frontier(self, fetch: Fetch, symbol: str) -> Frontier | None:
        rows = fetch(self._source.sql(_FRONTIER_SQL, ("close",)), [symbol], _FRONTIER_SCHEMA).to_pylist()
        if not rows:
            return None
        newest = rows[0]
        return Frontier(
            symbol=symbol,
            **{name: newest[name] for name in _FRONTIER_SCHEMA.names},
            previous_last_trade_id=rows[1]["last_trade_id"] if len(rows) > 1 else None,
        )

    def health(self) -> Health:
        """The pipeline's facts: loads, freshness per symbol, gaps, the audit and the streams."""
        source = self._source
        with source.session() as fetch:
            live = "pipeline" not in source.tables
            if live:
                pipeline = fetch(source.sql(_LIVE_PIPELINE_SQL), [source.exchange], _PIPELINE_SCHEMA)
            else:
                pipeline = fetch(source.sql(_PIPELINE_SQL), [], _PIPELINE_SCHEMA)
            facts = pipeline.to_pylist()[0] if len(pipeline) else dict.fromkeys(_PIPELINE_SCHEMA.names)
            exchange = facts["exchange"]
            freshness = fetch(source.sql(_FRESHNESS_SQL), [], _FRESHNESS_SCHEMA).to_pylist()
            gaps = fetch(source.sql(_GAPS_SQL), [], _GAPS_SCHEMA).to_pylist()[0]
            counts = fetch(source.sql(_AUDIT_COUNTS_SQL), [], _AUDIT_COUNTS_SCHEMA).to_pylist()[0]
            mismatches = fetch(source.sql(_MISMATCHES_SQL), [MISMATCHES_SHOWN], _MISMATCH_SCHEMA).to_pylist()
            streams = fetch(source.sql(_STREAMS_SQL), [], _STREAMS_SCHEMA).to_pylist()
        return Health(
            exchange=exchange,
            published_at=facts["published_at"],
            last_load_at=facts["last_load_at"],
            marts_loaded_at=facts["marts_loaded_at"],
            freshness=[SymbolFreshness(**row) for row in freshness],
            gaps=GapSummary(**gaps),
            audit=AuditSummary(
                checked=counts["checked"],
                matched=counts["matched"],
                mismatches=[AuditMismatch(**row) for row in mismatches],
                mismatched=counts["mismatched"],
            ),
            streams=[_stream_state(row) for row in streams],
        )

    def alerts(self, now: datetime) -> AlertsOverview:
        """The open incidents and the alerts of the ``RECENT_WINDOW`` before ``now``, with their deliveries."""
        since = _aware("now", now) - RECENT_WINDOW
        source = self._source
        with source.session() as fetch:
            if not all(self._exists(fetch, name) for name in ("alerts", "alert_deliveries")):
                return AlertsOverview(since, [], [], evaluated=False)
            active = fetch(source.sql(_ACTIVE_ALERTS_SQL), [PIPELINE, ACTIVE_SHOWN], _ALERT_SCHEMA).to_pylist()
            recent = fetch(source.sql(_RECENT_ALERTS_SQL), [since.isoformat(), RECENT_SHOWN], _ALERT_SCHEMA)
            shown = [*active, *recent.to_pylist()]
            deliveries = self._deliveries(fetch, sorted({row["alert_id"] for row in shown}))
        return AlertsOverview(
            since,
            [_history(row, deliveries) for row in active],
            [_history(row, deliveries) for row in recent.to_pylist()],
        )

    def _exists(self, fetch: Fetch, name: str) -> bool:
        schema, table = self._source.tables[name].split(".")
        sql = self._source.sql(_TABLE_EXISTS_SQL)
        return fetch(sql, [schema, table], _TABLE_EXISTS_SCHEMA)[0][0].as_py() > 0

    def _deliveries(self, fetch: Fetch, ids: list[str]) -> dict[str, list[Delivery]]:
        if not ids:
            return {}
        marks = ", ".join([self._source.dialect.placeholder] * len(ids))  # one bound parameter per id
        rows = fetch(self._source.sql(_DELIVERIES_SQL.replace("{ids}", marks)), ids, _DELIVERY_SCHEMA).to_pylist()
        by_alert: dict[str, list[Delivery]] = {}
        for row in rows:
            by_alert.setdefault(row.pop("alert_id"), []).append(Delivery(**row))
        return by_alert


def _history(row: dict[str, Any], deliveries: Mapping[str, list[Delivery]]) -> AlertHistory:
    """An alerts row as the model's ``Alert``: its value text read exactly as a Decimal."""
    fields = dict(row)
    if fields["value"] is not None:
        fields["value"] = Decimal(fields["value"])
    return AlertHistory(Alert(**fields), tuple(deliveries.get(row["alert_id"], ())))


def bucket_start(moment: datetime, interval: str) -> datetime:
    """The open time of the ``interval`` bucket that holds ``moment`` (aligned to the epoch, UTC, as the marts)."""
    width = BY_NAME[interval].length
    return moment - (moment - _EARLIEST) % width


def ticker_of(symbol: str, minutes: pa.Table) -> Ticker24h | None:
    """Binance's 24 h ticker from 1m candles (oldest first): the day of candles up to the newest one,
    the forming minute included. Candles without prices (trades missing, nothing known) are skipped;
    None when none of the day has a price. Exact: Arrow's decimal min, max and sum (every refresh
    computes it, so no Python row per minute)."""
    if minutes.num_rows == 0:
        return None
    day_before = pa.scalar(minutes["open_time"][-1].as_py() - timedelta(days=1), _TS)
    priced = minutes.filter(pc.and_(pc.greater(minutes["open_time"], day_before), pc.is_valid(minutes["close"])))
    if priced.num_rows == 0:
        return None
    opened, last = priced["open"][0].as_py(), priced["close"][-1].as_py()
    change = last - opened
    percent = (change * 100 / opened).quantize(Decimal("0.01"), ROUND_HALF_EVEN) if opened else Decimal("0.00")
    return Ticker24h(
        symbol=symbol,
        last_price=last,
        change=change,
        change_percent=percent,
        high=pc.max(priced["high"]).as_py(),
        low=pc.min(priced["low"]).as_py(),
        volume=pc.sum(priced["volume"]).as_py(),
        last_trade_time=pc.max(priced["last_trade_time"]).as_py(),
    )


def _stream_state(row: dict[str, Any]) -> StreamState:
    """A heartbeat row; its connection column is the connection's state as JSON (include/ingest/worker.py)."""
    try:
        details = json.loads(row["connection"]) if row["connection"] else {}
    except ValueError:
        details = {}
    details = details if isinstance(details, dict) else {}
    number = details.get("connection")
    return StreamState(
        symbol=row["symbol"],
        connection=None if number is None else str(number),
        updated_at=row["updated_at"],
        lag_seconds=row["lag_seconds"],
        state=details.get("state"),
    )
