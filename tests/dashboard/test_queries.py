"""dashboard/queries.py over a published snapshot written by tests/support/dashboard.py, and over
Snowflake's marts (fakesnow) holding the same rows: what was written comes back exactly, hostile
values are refused naming them, and an empty or missing snapshot explains itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb
import fakesnow
import pyarrow as pa
import pytest
import snowflake.connector

from dashboard.queries import (
    MAX_CANDLES,
    RECENT_SHOWN,
    AlertsOverview,
    Delivery,
    Health,
    MarketQueries,
    NoData,
    QueryRefused,
    memory_cursor,
    ticker_of,
)
from include.alerts.model import MARKET, PIPELINE
from include.alerts.store import ensure_alert_tables
from include.candles import CANDLE_SCHEMA, INTERVAL_NAMES
from include.lake.keys import EXCHANGE as LAKE_EXCHANGE
from include.warehouse.audit import ensure_audit_table
from include.warehouse.shared import SNOWFLAKE
from include.warehouse.snapshot import COPIED_TABLES, create_table_sql
from include.warehouse.snowflake_backend import render_setup, setup_versions
from include.warehouse.sql import row_chunks
from tests.support.dashboard import INTERVAL_MINUTES, START, SnapshotFacts, empty_snapshot, snapshot_with_candles
from tests.support.waiting import wait_until
from tests.support.warehouse import SNOWFLAKE_OBJECT_VERSIONS

MINUTES = 1_500  # more than the ticker's 24 h of 1m candles, so its window drops the oldest hour
NOW = START + timedelta(minutes=MINUTES, seconds=30)  # the heartbeats', audit's and publish's time


@pytest.fixture(scope="module")
def facts(tmp_path_factory) -> SnapshotFacts:
    return snapshot_with_candles(tmp_path_factory.mktemp("snapshot") / "marts.duckdb", minutes=MINUTES, now=NOW)


@pytest.fixture(scope="module")
def queries(facts) -> MarketQueries:
    return MarketQueries.duckdb_snapshot(facts.path)


def written(path: Path, table: str, where: str = "", params: tuple = ()) -> list[dict]:
    """A snapshot table's rows as the file holds them (plain DuckDB, no dashboard code), by open_time."""
    with duckdb.connect(":memory:") as connection:
        connection.execute("set TimeZone = 'UTC'")
        connection.execute(f"attach '{path}' as s (read_only)")
        result = connection.execute(f"select * from s.main.{table} {where}", list(params))
        names = [column[0] for column in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def candles_written(path: Path, symbol: str, interval: str) -> list[dict]:
    return written(path, f"candles_{interval}", "where symbol = ? order by open_time", (symbol,))


def ticker(queries: MarketQueries, symbol: str):
    """The 24 h ticker as the page computes it: from the 1m candles of ``edge``."""
    return ticker_of(symbol, queries.edge(symbol, "1m").minutes)


# --- candles and symbols ----------------------------------------------------------------------------


def test_symbols_are_every_symbol_written_sorted(queries, facts):
    assert queries.symbols() == sorted(facts.symbols)


@pytest.mark.parametrize("interval", list(INTERVAL_NAMES))
def test_candles_of_each_interval_are_the_rows_written_exactly(queries, facts, interval):
    for symbol in facts.symbols:
        table = queries.candles(symbol, interval, limit=MAX_CANDLES)
        assert table.schema == CANDLE_SCHEMA
        assert pa.types.is_decimal128(table.schema.field("close").type)
        assert table.schema.field("open_time").type == pa.timestamp("us", tz="UTC")
        expected = candles_written(facts.path, symbol, interval)
        assert len(expected) == -(-MINUTES // INTERVAL_MINUTES[interval])  # a bucket per interval, none lost
        assert table.to_pylist() == expected  # Decimals equal as Decimals, at the written scale
        assert all(row["close"].as_tuple().exponent == -8 for row in table.to_pylist())


def test_only_the_forming_candle_is_flagged_not_closed(queries, facts):
    closed_by = facts.end - timedelta(minutes=1)  # the forming minute's open
    for interval in INTERVAL_NAMES:
        width = timedelta(minutes=INTERVAL_MINUTES[interval])
        rows = queries.candles("BTCUSDT", interval, limit=MAX_CANDLES).to_pylist()
        assert rows[-1]["is_closed"] is False, interval  # the newest bucket holds the forming minute
        # Closed, as the marts roll up: every bucket whose end the last closed minute reaches (the first
        # day's too, though it began at 08:00).
        assert [row["is_closed"] for row in rows] == [row["open_time"] + width <= closed_by for row in rows], interval
    forming = queries.candles("ETHUSDT", "1m", limit=1).to_pylist()
    assert [row["open_time"] for row in forming] == [facts.end - timedelta(minutes=1)]
    assert forming[0]["close"] == facts.last_close["ETHUSDT"]


def test_start_end_and_limit_choose_the_candles(queries, facts):
    start, end = START + timedelta(minutes=10), START + timedelta(minutes=30)
    opened = queries.candles("BTCUSDT", "5m", start, end).column("open_time").to_pylist()
    assert opened == [START + timedelta(minutes=m) for m in (10, 15, 20, 25)]  # [start, end)
    # The same instants in another zone choose the same candles.
    plus_two = timezone(timedelta(hours=2))
    assert (
        queries.candles("BTCUSDT", "5m", start.astimezone(plus_two), end.astimezone(plus_two))
        .column("open_time")
        .to_pylist()
        == opened
    )
    # A limit keeps the newest candles of the range, oldest first.
    newest = queries.candles("BTCUSDT", "1m", start, end, limit=3).to_pylist()
    assert [row["open_time"] for row in newest] == [START + timedelta(minutes=m) for m in (27, 28, 29)]
    assert newest == candles_written(facts.path, "BTCUSDT", "1m")[27:30]
    assert queries.candles("BTCUSDT", "1h", start=START + timedelta(hours=1)).num_rows == -(-MINUTES // 60) - 1
    assert queries.candles("BTCUSDT", "1h", end=START + timedelta(hours=1)).num_rows == 1
    before = queries.candles("BTCUSDT", "1m", end=START)
    assert before.num_rows == 0
    assert before.schema == CANDLE_SCHEMA


def test_ten_thousand_candles_come_back(tmp_path):
    minutes = 10_001
    path = snapshot_with_candles(tmp_path / "marts.duckdb", symbols=("BTCUSDT",), minutes=minutes).path
    queries = MarketQueries.duckdb_snapshot(path)
    table = queries.candles("BTCUSDT", "1m", limit=10_000)
    assert table.num_rows == 10_000
    assert table.to_pylist() == candles_written(path, "BTCUSDT", "1m")[1:]  # the newest 10,000
    assert queries.candles("BTCUSDT", "1m").num_rows == MAX_CANDLES == 10_000  # the most one read returns


# --- the 24 h ticker ---------------------------------------------------------------------------------


def test_ticker_is_computed_from_the_newest_24_hours_of_1m_candles(queries, facts):
    for symbol in facts.symbols:
        minutes = candles_written(facts.path, symbol, "1m")
        window = minutes[-1440:]  # 24 h of minutes, the forming one included
        assert window[0]["open_time"] > minutes[0]["open_time"], "the snapshot must hold more than 24 h"
        day = ticker(queries, symbol)
        change = window[-1]["close"] - window[0]["open"]
        assert day.symbol == symbol
        assert day.last_price == window[-1]["close"] == facts.last_close[symbol]
        assert day.change == change
        assert day.change_percent == (change * 100 / window[0]["open"]).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        assert day.high == max(row["high"] for row in window)
        assert day.low == min(row["low"] for row in window)
        assert day.volume == sum(row["volume"] for row in window)
        assert day.last_trade_time == window[-1]["last_trade_time"]
        # Not the whole history: the oldest hour lies outside the window.
        assert day.volume != sum(row["volume"] for row in minutes)


# --- health --------------------------------------------------------------------------------------------


def test_health_states_freshness_loads_gaps_audit_and_streams(queries, facts):
    health = queries.health()
    (pipeline,) = written(facts.path, "pipeline")
    assert health.exchange == facts.exchange == "sandbox"
    assert health.published_at == pipeline["published_at"] == NOW
    assert health.last_load_at == pipeline["last_load_at"] is not None
    assert health.marts_loaded_at == max(row["last_loaded_at"] for row in written(facts.path, "candles_1m"))
    last_closed = facts.end - timedelta(minutes=1, milliseconds=1)  # the minute before the forming one
    assert [(f.symbol, f.last_closed_close_time) for f in health.freshness] == [
        (symbol, last_closed) for symbol in sorted(facts.symbols)
    ]
    windows = written(facts.path, "completeness")
    assert (health.gaps.windows, health.gaps.found) == (
        len(windows),
        sum(row["expected"] - row["present_before"] for row in windows),
    )
    assert health.gaps.filled == sum(row["filled"] for row in windows) > 0
    assert health.gaps.holes == sum(len(json.loads(row["holes"])) for row in windows) > 0
    assert health.gaps.missing == sum(row["missing"] for row in windows) > 0
    audits = written(facts.path, "candle_audit")
    mismatched = [row for row in audits if row["status"] == "mismatch"]
    assert mismatched, "the snapshot must hold a mismatch to show"
    assert health.audit.checked == len(audits)
    assert health.audit.matched == len(audits) - len(mismatched)
    assert health.audit.mismatched == len(mismatched)
    assert [(m.symbol, m.interval, m.open_time, m.differences) for m in health.audit.mismatches] == [
        (row["symbol"], row["interval"], row["open_time"], row["differences"]) for row in mismatched
    ]
    beats = sorted(written(facts.path, "stream_status"), key=lambda row: row["symbol"])
    assert [(s.symbol, s.updated_at, s.lag_seconds) for s in health.streams] == [
        (row["symbol"], row["updated_at"], row["lag_seconds"]) for row in beats
    ]
    states = [json.loads(row["connection"]) for row in beats]
    assert [(s.connection, s.state) for s in health.streams] == [
        (str(state["connection"]), state["state"]) for state in states
    ]
    assert len({s.connection for s in health.streams}) == 2, "two connections, each named"


def test_health_shows_the_lakes_heartbeats_and_gaps_under_a_sandbox_pipeline(tmp_path):
    """The stream and the repair write status under the lake's exchange partition (always Binance's:
    the sandbox speaks its protocol), whatever EXCHANGE the pipeline row names."""
    path = snapshot_with_candles(tmp_path / "marts.duckdb", minutes=10).path
    with duckdb.connect(str(path)) as connection:
        for table in ("stream_status", "completeness"):
            connection.execute(f"update {table} set exchange = ?", [LAKE_EXCHANGE])
    health = MarketQueries.duckdb_snapshot(path).health()
    assert LAKE_EXCHANGE != health.exchange == "sandbox"
    assert [stream.symbol for stream in health.streams] == ["BTCUSDT", "ETHUSDT"]
    assert health.gaps.windows == len(written(path, "completeness")) > 0


# --- the speed layer's inputs and what is not known ------------------------------------------------------


@pytest.fixture(scope="module")
def holey(tmp_path_factory) -> SnapshotFacts:
    """Two hours; minutes 7 and 50 incomplete, 60-61 and the one before the forming minute without prices."""
    return snapshot_with_candles(
        tmp_path_factory.mktemp("holey") / "marts.duckdb",
        minutes=120,
        incomplete=frozenset({7, 50}),
        gaps=frozenset({60, 61, 118}),
        now=START + timedelta(minutes=120),
    )


@pytest.mark.parametrize("interval", list(INTERVAL_NAMES))
def test_edge_reads_the_candles_the_frontier_and_the_minutes_from_its_bucket(holey, interval):
    queries = MarketQueries.duckdb_snapshot(holey.path)
    edge = queries.edge("ETHUSDT", interval, limit=50)
    assert edge.candles.to_pylist() == queries.candles("ETHUSDT", interval, limit=50).to_pylist()
    minutes = candles_written(holey.path, "ETHUSDT", "1m")
    newest, before = minutes[-1], [row for row in minutes if row["trade_count"]][-2]
    assert newest["trade_count"] > 0  # the forming minute has trades: it is the frontier
    frontier = edge.frontier
    assert (frontier.open_time, frontier.first_trade_id, frontier.last_trade_id, frontier.close) == (
        newest["open_time"],
        newest["first_trade_id"],
        newest["last_trade_id"],
        newest["close"],
    )
    assert (frontier.is_closed, frontier.is_complete, frontier.trade_count) == (False, True, newest["trade_count"])
    assert frontier.previous_last_trade_id == before["last_trade_id"]  # the minute before it had no trade
    width = timedelta(minutes=INTERVAL_MINUTES[interval])
    bucket = newest["open_time"] - (newest["open_time"] - datetime(1970, 1, 1, tzinfo=UTC)) % width
    since = min(bucket, newest["open_time"] - timedelta(days=1))
    assert edge.minutes.to_pylist() == [row for row in minutes if row["open_time"] >= since]


def test_candles_without_prices_come_back_as_nulls_and_the_ticker_skips_them(holey):
    queries = MarketQueries.duckdb_snapshot(holey.path)
    rows = queries.candles("BTCUSDT", "1m").to_pylist()
    unknown = [row for row in rows if row["close"] is None]
    assert [row["open_time"] for row in unknown] == [START + timedelta(minutes=m) for m in (60, 61, 118)]
    assert all(row[name] is None for row in unknown for name in ("open", "high", "low", "first_trade_id"))
    priced = [row for row in rows if row["close"] is not None]
    day = ticker(queries, "BTCUSDT")
    assert (day.change, day.last_price) == (priced[-1]["close"] - priced[0]["open"], priced[-1]["close"])
    assert day.high == max(row["high"] for row in priced)
    assert day.low == min(row["low"] for row in priced)
    assert day.volume == sum(row["volume"] for row in rows)
    assert ticker_of("BTCUSDT", queries.candles("BTCUSDT", "1m").slice(60, 2)) is None  # nothing known


def test_health_counts_each_symbols_closed_incomplete_candles_and_the_oldest(holey):
    health = MarketQueries.duckdb_snapshot(holey.path).health()
    since = START + timedelta(minutes=7)
    # 7 and 50 incomplete, 60, 61 and 118 without prices: all closed (119 is forming)
    assert [(item.symbol, item.incomplete, item.incomplete_since) for item in health.freshness] == [
        ("BTCUSDT", 5, since),
        ("ETHUSDT", 5, since),
    ]


# --- hostile input -----------------------------------------------------------------------------------

LONG = "A" * 10_000
HOSTILE_SYMBOLS = [
    "BTCUSDT'; drop table candles_1m; --",
    "BTCUSDT' or '1'='1",
    "' union select * from pipeline --",
    "DOGEUSDT",  # looks like a symbol; not in the marts
    "btcusdt",
    "BTCUSDT\n",
    "",
    LONG,
    None,
    42,
]
HOSTILE_INTERVALS = ["2m", "1M", "1m; drop table candles_1m", "candles_1m", "", "5m ", LONG, None, 5]
HOSTILE_RANGES = [
    ("2026-11-24", None),  # text, not a date and time
    (None, "2026-11-25T00:00:00Z"),
    (datetime(2026, 11, 24, 8, 0), None),  # no time zone
    (date(2026, 11, 24), None),
    (LONG, None),
    (None, 1_795_514_400),
]
HOSTILE_LIMITS = [0, -1, MAX_CANDLES + 1, True, "10", 1.5, None]


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(QueryRefused) as refused:
        call()
    return str(refused.value)


def assert_named(message: str, value: object) -> None:
    """The message names the value: whole, or its beginning and length when it is long."""
    text = repr(value)
    assert (text if len(text) <= 60 else text[:50]) in message, message
    if len(text) > 60:
        assert f"{len(text)} characters" in message
        assert len(message) < 300, "a long value is cut short in the message"


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS, ids=repr)
def test_a_hostile_symbol_is_refused_naming_it(queries, symbol):
    assert_named(refusal(lambda: queries.candles(symbol, "1m")), symbol)
    assert_named(refusal(lambda: queries.edge(symbol, "1m")), symbol)


@pytest.mark.parametrize("interval", HOSTILE_INTERVALS, ids=repr)
def test_a_hostile_interval_is_refused_naming_it(queries, interval):
    message = refusal(lambda: queries.candles("BTCUSDT", interval))
    assert_named(message, interval)
    assert "1m, 5m, 15m, 1h, 4h, 1d" in message


@pytest.mark.parametrize(("start", "end"), HOSTILE_RANGES, ids=repr)
def test_a_bad_date_is_refused_naming_it(queries, start, end):
    assert_named(refusal(lambda: queries.candles("BTCUSDT", "1m", start, end)), end if start is None else start)


@pytest.mark.parametrize("end", [START, START - timedelta(minutes=1)], ids=["empty", "reversed"])
def test_a_range_that_holds_no_instant_is_refused(queries, end):
    message = refusal(lambda: queries.candles("BTCUSDT", "1m", START, end))
    assert START.isoformat() in message
    assert end.isoformat() in message


@pytest.mark.parametrize("limit", HOSTILE_LIMITS, ids=repr)
def test_a_bad_limit_is_refused_naming_it(queries, limit):
    assert_named(refusal(lambda: queries.candles("BTCUSDT", "1m", limit=limit)), limit)


def test_hostile_values_change_nothing(queries, facts):
    for symbol in HOSTILE_SYMBOLS:
        with pytest.raises(QueryRefused):
            queries.candles(symbol, "1m")
    assert queries.symbols() == sorted(facts.symbols)
    assert queries.candles("BTCUSDT", "1m", limit=MAX_CANDLES).num_rows == MINUTES


# --- no data -----------------------------------------------------------------------------------------


def test_an_empty_snapshot_explains_that_no_candles_are_loaded_yet(tmp_path):
    queries = MarketQueries.duckdb_snapshot(empty_snapshot(tmp_path / "marts.duckdb"))
    assert queries.symbols() == []
    for call in (lambda: queries.candles("BTCUSDT", "1m"), lambda: queries.edge("BTCUSDT", "1m")):
        with pytest.raises(NoData, match="no candles yet: they appear after the first load and transform"):
            call()
    health = queries.health()
    assert (health.exchange, health.last_load_at, health.marts_loaded_at) == ("sandbox", None, None)
    assert (health.freshness, health.streams, health.audit.mismatches) == ([], [], [])
    assert (health.gaps.windows, health.gaps.found, health.audit.checked) == (0, 0, 0)


def test_a_missing_snapshot_says_where_it_is_awaited_and_what_to_run(tmp_path):
    path = tmp_path / "not yet" / "marts.duckdb"
    queries = MarketQueries.duckdb_snapshot(path)
    calls = [queries.symbols, queries.health, lambda: queries.candles("BTCUSDT", "1m")]
    for call in [*calls, lambda: queries.edge("BTCUSDT", "1m")]:
        with pytest.raises(NoData) as no_data:
            call()
        assert str(path) in str(no_data.value)
        assert "make up" in str(no_data.value)
    assert not path.exists(), "a reader creates nothing"


def test_a_snapshot_published_later_is_read_by_the_next_call(tmp_path):
    path = tmp_path / "marts.duckdb"
    queries = MarketQueries.duckdb_snapshot(path)
    with pytest.raises(NoData):
        queries.symbols()
    empty_snapshot(path)
    assert queries.symbols() == []
    snapshot_with_candles(path, symbols=("XRPETH",), minutes=3)
    assert queries.symbols() == ["XRPETH"]
    assert queries.candles("XRPETH", "1m").num_rows == 3


def test_threads_reading_while_snapshots_are_replaced_each_read_one_whole_snapshot(tmp_path):
    """Calls from several threads (Streamlit's sessions) while publishes replace the file: each call
    reads one snapshot throughout, the one published when it began, and later calls read later ones."""
    path = tmp_path / "marts.duckdb"
    snapshot_with_candles(path, symbols=("BTCUSDT",), minutes=10)
    queries, stop = MarketQueries.duckdb_snapshot(path), threading.Event()
    seen: list[tuple[int, timedelta]] = []
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                health = queries.health()  # six queries in one call
                (fresh,) = health.freshness
                seen.append(
                    (queries.candles("BTCUSDT", "1m").num_rows, health.published_at - fresh.last_closed_close_time)
                )
            except BaseException as error:
                errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for minutes in range(11, 16):
            snapshot_with_candles(path, symbols=("BTCUSDT",), minutes=minutes)
            count = len(seen)
            wait_until(lambda count=count: len(seen) > count + 2 or errors, 60, "reads of the new snapshot")
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert errors == []
    # published_at is the snapshot's last close (+1 ms): one file per call, never two mixed.
    assert {gap for _, gap in seen} == {timedelta(minutes=1, milliseconds=1)}
    counts = [rows for rows, _ in seen]
    assert set(counts) <= set(range(10, 16))
    assert len(set(counts)) > 3, "the reads followed the publishes"


# --- alerts -----------------------------------------------------------------------------------------


def expected_alerts(path: Path, since: datetime) -> tuple[list[dict], list[dict]]:
    """(open incidents, alerts fired since ``since``), newest first, as the snapshot's file holds them."""
    rows = sorted(written(path, "alerts"), key=lambda row: (-row["fired_at"].timestamp(), row["alert_id"]))
    active = [row for row in rows if row["kind"] == PIPELINE and row["resolved_at"] is None]
    return active, [row for row in rows if row["fired_at"] >= since][:RECENT_SHOWN]


def shown(overview: AlertsOverview) -> tuple[list[tuple], list[tuple]]:
    """(id, value as text) of the open incidents and of the recent alerts."""

    def text(history):
        value = history.alert.value
        return history.alert.alert_id, None if value is None else format(value, "f")

    return [text(item) for item in overview.active], [text(item) for item in overview.recent]


def test_alerts_are_the_open_incidents_and_the_days_alerts_with_their_deliveries_exactly(queries, facts):
    overview = queries.alerts(NOW)
    assert overview.evaluated
    assert overview.since == NOW - timedelta(hours=24)
    active, recent = expected_alerts(facts.path, overview.since)
    assert [item.alert.rule_id for item in overview.active] == ["stale_symbol"] == [row["rule_id"] for row in active]
    # Newest first: the stale symbol, the market cross, the incident resolved; the alert of two days ago is not.
    assert shown(overview) == (
        [(row["alert_id"], None) for row in active],
        [(row["alert_id"], row["value"]) for row in recent],
    )
    assert [item.alert.rule_id for item in overview.recent] == ["stale_symbol", "btcusdt-cross", "reconnect_storm"]
    cross = overview.recent[1].alert
    assert (cross.kind, cross.symbol, cross.interval, format(cross.value, "f")) == (
        MARKET,
        "BTCUSDT",
        "1m",
        "60000.12345678",
    )  # the stored text, every digit
    assert overview.recent[2].alert.resolved_at == NOW - timedelta(hours=2)
    by_id = {row["alert_id"]: row for row in written(facts.path, "alerts")}
    assert all(item.alert.message == by_id[item.alert.alert_id]["message"] for item in overview.recent)
    # Each alert's deliveries, every channel and event, as the outbox holds them.
    outbox = written(facts.path, "alert_deliveries")
    for item in [*overview.active, *overview.recent]:
        expected = sorted(
            (
                Delivery(**{k: v for k, v in row.items() if k != "alert_id"})
                for row in outbox
                if row["alert_id"] == item.alert.alert_id
            ),
            key=lambda delivery: (delivery.event, delivery.channel),
        )
        assert list(item.deliveries) == expected, item.alert.rule_id
    assert [(d.channel, d.attempts, d.delivered_at, d.last_error) for d in overview.recent[1].deliveries] == [
        ("email", 3, None, "SMTP 127.0.0.1:8025: connection refused"),
        ("webhook", 1, NOW - timedelta(minutes=30), None),
    ]
    assert [d.event for d in overview.recent[2].deliveries] == ["fired", "resolved"]


def test_recent_alerts_are_the_newest_fifty_of_the_day(tmp_path):
    path = snapshot_with_candles(tmp_path / "marts.duckdb", minutes=2, now=NOW).path
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            "insert into alerts select 'many-' || i, 'market', 'many', 'BTCUSDT 1m', 'many ' || i, "
            "?::timestamptz, 'BTCUSDT', '1m', null, '1.' || i, ?::timestamptz - to_seconds(i), null "
            "from range(1, 71) t(i)",
            [NOW, NOW],
        )
    overview = MarketQueries.duckdb_snapshot(path).alerts(NOW)
    assert len(overview.recent) == RECENT_SHOWN
    assert [item.alert.alert_id for item in overview.recent] == [f"many-{i}" for i in range(1, RECENT_SHOWN + 1)]
    assert format(overview.recent[0].alert.value, "f") == "1.1"


def test_a_snapshot_without_the_alerts_tables_says_no_evaluation_yet(tmp_path):
    path = snapshot_with_candles(tmp_path / "marts.duckdb", minutes=2, now=NOW).path
    with duckdb.connect(str(path)) as connection:  # as a snapshot published before the alerts were
        connection.execute("drop table alert_deliveries")
        connection.execute("drop table alerts")
    overview = MarketQueries.duckdb_snapshot(path).alerts(NOW)
    assert (overview.evaluated, overview.active, overview.recent) == (False, [], [])
    # Another call of this process reading a newer snapshot at the same time: its tables are not this one's.
    newer = snapshot_with_candles(tmp_path / "newer.duckdb", minutes=2, now=NOW).path
    other = memory_cursor()
    try:
        other.execute(f"attach '{newer}' as another_reader (read_only)")
        assert MarketQueries.duckdb_snapshot(path).alerts(NOW).evaluated is False
    finally:
        other.execute("detach another_reader")
        other.close()


@pytest.mark.parametrize("now", [datetime(2026, 11, 24), "2026-11-24T00:00:00Z", None], ids=repr)
def test_alerts_refuse_a_time_without_a_zone_naming_it(queries, now):
    assert_named(refusal(lambda: queries.alerts(now)), now)


# --- Snowflake: the same rows in fakesnow give the same answers ---------------------------------------

Run = Callable[[str, list], object]


def _snowflake_with(facts: SnapshotFacts, cursor) -> None:
    """The raw tables from the project's own setup SQL (object-level versions), marts.candle_audit as the
    audit creates it, the candle marts with the snapshot's columns; then every row of the snapshot."""
    for migration in setup_versions():
        if migration.version in SNOWFLAKE_OBJECT_VERSIONS:
            for statement in render_setup(migration.path, "cryptoflow", "file:///nowhere", "unused"):
                cursor.execute(statement)
    ensure_audit_table(lambda sql, params=None: cursor.execute(sql, params).fetchall(), SNOWFLAKE)
    ensure_alert_tables(lambda sql, params=None: cursor.execute(sql, params).fetchall(), SNOWFLAKE)
    for name, (schema, table, columns) in COPIED_TABLES.items():
        if name.startswith("candles_"):
            cursor.execute(create_table_sql(table, columns, schema).replace("timestamptz", "timestamp_tz"))
        rows = written(facts.path, name)
        if not rows:  # a table the snapshot holds empty (gap_fills in these facts)
            continue
        marks = "(" + ", ".join(["%s"] * len(rows[0])) + ")"
        for chunk in row_chunks(rows):  # one statement per chunk: fakesnow translates each statement
            cursor.execute(
                f"insert into {schema}.{table} ({', '.join(rows[0])}) values {', '.join([marks] * len(chunk))}",
                [value for row in chunk for value in row.values()],
            )


@pytest.fixture(scope="module")
def snowflake_facts(tmp_path_factory) -> SnapshotFacts:
    """A smaller snapshot than ``facts``: fakesnow is slow to insert."""
    return snapshot_with_candles(tmp_path_factory.mktemp("snowflake") / "marts.duckdb", minutes=300, now=NOW)


@pytest.fixture(scope="module")
def snowflake_cursor(snowflake_facts) -> Iterator[object]:
    with fakesnow.patch(), snowflake.connector.connect(database="cryptoflow", schema="marts") as connection:
        cursor = connection.cursor()
        _snowflake_with(snowflake_facts, cursor)
        yield cursor


@pytest.fixture(
    scope="module",
    params=["pandas", "rows"],  # st.connection's query gives a DataFrame; a plain cursor gives tuples
)
def snowflake_queries(request, snowflake_cursor, snowflake_facts) -> MarketQueries:
    def as_pandas(sql: str, params: list) -> object:
        frame = snowflake_cursor.execute(sql, params).fetch_pandas_all()
        # The real connector's fetch_pandas_all gives NUMBER(38, s) as float64 (fakesnow keeps Decimals):
        # what the module must never see for a price, so it is done here as the connector does it.
        for name in frame.columns:
            if any(isinstance(value, Decimal) for value in frame[name]):
                frame[name] = frame[name].astype("float64")
        return frame

    def as_rows(sql: str, params: list) -> object:
        return snowflake_cursor.execute(sql, params).fetchall()

    # The exchange is the setting's (here the snapshot's, "sandbox"): the heartbeats' exchange column is
    # the lake's partition, which a sandbox run writes as "binance" too.
    return MarketQueries.snowflake(as_pandas if request.param == "pandas" else as_rows, snowflake_facts.exchange)


def test_snowflake_gives_the_snapshots_symbols_and_candles(snowflake_queries, snowflake_facts):
    facts, queries = snowflake_facts, MarketQueries.duckdb_snapshot(snowflake_facts.path)
    assert snowflake_queries.symbols() == queries.symbols() == sorted(facts.symbols)
    for interval in INTERVAL_NAMES:
        for symbol in facts.symbols:
            expected = queries.candles(symbol, interval, limit=MAX_CANDLES)
            got = snowflake_queries.candles(symbol, interval, limit=MAX_CANDLES)
            assert got.schema == CANDLE_SCHEMA
            assert got.to_pylist() == expected.to_pylist(), (symbol, interval)
            live, published = (
                snowflake_queries.edge(symbol, interval, limit=60),
                queries.edge(symbol, interval, limit=60),
            )
            assert live.frontier == published.frontier is not None, (symbol, interval)
            assert live.minutes.to_pylist() == published.minutes.to_pylist(), (symbol, interval)
    start, end = START + timedelta(minutes=10), START + timedelta(minutes=30)
    ranged = snowflake_queries.candles("ETHUSDT", "1m", start, end, limit=4)
    assert ranged.to_pylist() == queries.candles("ETHUSDT", "1m", start, end, limit=4).to_pylist()
    assert ranged.num_rows == 4


def test_snowflake_gives_the_snapshots_ticker_and_health(snowflake_queries, snowflake_facts):
    facts, queries = snowflake_facts, MarketQueries.duckdb_snapshot(snowflake_facts.path)
    for symbol in facts.symbols:
        assert ticker(snowflake_queries, symbol) == ticker(queries, symbol) is not None
    live, published = snowflake_queries.health(), queries.health()
    assert isinstance(live, Health)
    # Read live: no publish, and the last load is the newest status refresh (every load refreshes them).
    assert live.published_at is None
    beats, windows = written(facts.path, "stream_status"), written(facts.path, "completeness")
    assert live.last_load_at == max(row["loaded_at"] for row in beats + windows)
    same = ("exchange", "marts_loaded_at", "freshness", "gaps", "audit", "streams")
    assert {name: getattr(live, name) for name in same} == {name: getattr(published, name) for name in same}


@pytest.mark.parametrize("symbol", ["BTCUSDT' or '1'='1", "DOGEUSDT", LONG], ids=repr)
def test_snowflake_refuses_the_same_hostile_values(snowflake_queries, symbol):
    assert_named(refusal(lambda: snowflake_queries.candles(symbol, "1m")), symbol)
    assert_named(refusal(lambda: snowflake_queries.candles("BTCUSDT", symbol)), symbol)


def test_snowflake_gives_the_snapshots_alerts(snowflake_queries, snowflake_facts):
    live = snowflake_queries.alerts(NOW)
    assert live == MarketQueries.duckdb_snapshot(snowflake_facts.path).alerts(NOW)
    assert shown(live)[1][1] == (live.recent[1].alert.alert_id, "60000.12345678")  # exact through pandas too


def test_snowflake_without_the_alerts_tables_says_no_evaluation_yet(snowflake_cursor):
    """Another database of the same (patched) account: the tables of ``snowflake_cursor``'s do not count."""
    with snowflake.connector.connect(database="fresh", schema="marts") as connection:
        cursor = connection.cursor()
        cursor.execute("create schema if not exists marts")
        queries = MarketQueries.snowflake(lambda sql, params: cursor.execute(sql, params).fetchall(), "binance")
        assert queries.alerts(NOW).evaluated is False
