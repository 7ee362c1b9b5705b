"""A small published dashboard snapshot, written directly (no lake, no dbt): for page, browser and bench tests.

``snapshot_with_candles`` writes every snapshot table (include/warehouse/snapshot.py) with exact
decimals: 1-minute candles per symbol (the last one forming, ``is_closed`` false) with their trade
ids and completeness (some minutes incomplete or without prices, when asked), the other intervals
rolled up from them by the marts' rules (tests/support/candle_rules.py), heartbeats, completeness
windows (one with a gap filled, one with an exchange-side hole), audit rows (matches and one
mismatch), alerts with their deliveries (``alert_rows``) and the pipeline row. Prices are a
deterministic walk, so tests can compute what they expect.
``write_snapshot`` publishes candle rows given whole (e.g. the oracle's, for the speed layer's tests).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from include.alerts.model import FIRED, MARKET, PIPELINE, RESOLVED, alert_id
from include.candles import INTERVAL_NAMES
from include.lake.keys import EXCHANGE as LAKE_EXCHANGE
from include.warehouse.snapshot import COPIED_TABLES, create_empty_snapshot_tables, temporary_path
from tests.support.candle_rules import SUMMED, roll_up

# A minute boundary: 2026-11-24T08:00:00Z (tests/support/trades.py START_US).
START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
INTERVAL_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440}
EIGHT = Decimal("0.00000001")
SIXTEEN = Decimal("0.0000000000000001")
BASE_PRICES = {"BTCUSDT": Decimal("60000"), "ETHUSDT": Decimal("3000"), "XRPETH": Decimal("0.0002")}


@dataclass(frozen=True)
class SnapshotFacts:
    """What was written, for assertions (expected health: see ``_health_rows``)."""

    path: Path
    symbols: tuple[str, ...]
    minutes: int
    start: datetime
    end: datetime  # the forming candle's open time + 1 minute
    last_close: dict[str, Decimal]
    exchange: str


def minute_prices(symbol: str, minute: int) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    """(open, high, low, close, volume) of ``symbol``'s candle ``minute``: a deterministic exact walk."""
    base = BASE_PRICES.get(symbol, Decimal("100"))
    step = base / 10_000  # 0.01 % per step
    wave = (minute * 7919) % 41 - 20  # -20..20, varied
    open_ = (base + step * wave).quantize(EIGHT)
    close = (base + step * ((minute * 7919 + 7919) % 41 - 20)).quantize(EIGHT)
    high = (max(open_, close) + step * (minute % 5)).quantize(EIGHT)
    low = (min(open_, close) - step * (minute % 3)).quantize(EIGHT)
    volume = (Decimal(1 + (minute * 104_729) % 997) / 100).quantize(EIGHT)
    return open_, high, low, close, volume


def first_trade_id(symbol: str) -> int:
    """The id of the symbol's first trade in the snapshot: the ids of its minutes follow on from it."""
    return 1 + 1_000_000 * sorted(BASE_PRICES).index(symbol) if symbol in BASE_PRICES else 9_000_001


def _minute_rows(
    symbol: str, minutes: int, start: datetime, loaded_at: datetime, incomplete: frozenset[int], gaps: frozenset[int]
) -> list[dict[str, object]]:
    """The symbol's 1m candles: ids consecutive, but for the minutes in ``incomplete`` (the ids just
    before their first trade are missing) and ``gaps`` (ids missing, no trade known: no prices)."""
    rows, next_id = [], first_trade_id(symbol)
    for minute in range(minutes):
        open_, high, low, close, volume = minute_prices(symbol, minute)
        open_time = start + timedelta(minutes=minute)
        quote = (volume * close).quantize(SIXTEEN)
        count = 1 + minute % 17
        if minute in incomplete or minute in gaps:
            next_id += 3  # three ids the lake lacks
        row = {
            "symbol": symbol,
            "open_time": open_time,
            "close_time": open_time + timedelta(minutes=1, milliseconds=-1),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": quote,
            "taker_buy_volume": (volume / 2).quantize(EIGHT),
            "taker_buy_quote_volume": (quote / 2).quantize(SIXTEEN),
            "trade_count": count,
            "first_trade_id": next_id,
            "last_trade_id": next_id + count - 1,
            "last_trade_time": open_time + timedelta(seconds=59),
            "is_closed": minute < minutes - 1,  # the last minute is still forming
            "is_complete": minute not in incomplete,
            "last_loaded_at": loaded_at,
            "built_at": loaded_at,
        }
        if minute in gaps:  # nothing known of this minute: the marts give no prices, never a flat candle
            row |= dict.fromkeys(("open", "high", "low", "close", "first_trade_id", "last_trade_id"), None)
            row |= {name: Decimal(0) for name in SUMMED} | {"trade_count": 0, "last_trade_time": None}
            row |= {"is_complete": False}
        else:
            next_id += count
        rows.append(row)
    return rows


def _insert(connection: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    columns = [row[1] for row in connection.execute(f"pragma table_info('{table}')").fetchall()]
    schema = connection.sql(f'select * from "{table}" limit 0').to_arrow_table().schema
    data = pa.table({name: [row.get(name) for row in rows] for name in columns}, schema=schema)
    connection.register("incoming_rows", data)
    try:
        connection.execute(f'insert into "{table}" by name select * from incoming_rows')
    finally:
        connection.unregister("incoming_rows")


def _health_rows(
    symbols: tuple[str, ...], start: datetime, end: datetime, now: datetime
) -> dict[str, list[dict[str, object]]]:
    """Heartbeats and completeness windows under the lake's exchange partition, as the stream and the
    repair write them (always "binance", the sandbox included), and audit rows."""
    exchange = LAKE_EXCHANGE
    streams, windows, audits = [], [], []
    for index, symbol in enumerate(symbols):
        streams.append(
            {
                "exchange": exchange,
                "symbol": symbol,
                "updated_at": now,
                "last_trade_id": 1000 + index,
                "last_trade_time": end - timedelta(seconds=1),
                "lag_seconds": 0.5 + index,
                # The connection's state as the stream worker writes it (include/ingest/worker.py).
                "connection": json.dumps(
                    {"connection": index % 2, "connects": 1, "restarts": 0, "state": "connected", "streams": 1},
                    sort_keys=True,
                ),
                "loaded_at": now,
            }
        )
        # Each window: expected = present_before + filled + holes + missing (include/repair/repair.py).
        # One with 10 trades filled, one with an exchange-side hole of 5 ids.
        windows.append(_window(exchange, symbol, start, (100, 90, 10, 0), [], now))
        windows.append(_window(exchange, symbol, start + timedelta(hours=1), (50, 45, 0, 0), list(range(7, 12)), now))
        audits.append(_audit(symbol, "1m", start, "match", "", now))
        audits.append(_audit(symbol, "5m", start, "match", "", now))
    if symbols:  # the first symbol also has 3 trades still missing, and one audit mismatch
        windows.append(_window(exchange, symbols[0], start + timedelta(hours=2), (20, 15, 2, 3), [], now))
        difference = "close: warehouse 1.00000000 != exchange 1.00000001"
        audits.append(_audit(symbols[0], "1m", start + timedelta(minutes=1), "mismatch", difference, now))
    alerts, deliveries = alert_rows(symbols, now)
    tables = {"stream_status": streams, "completeness": windows, "candle_audit": audits}
    return tables | {"alerts": alerts, "alert_deliveries": deliveries}


def alert_rows(symbols: tuple[str, ...], now: datetime) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """marts.alerts and marts.alert_deliveries as the evaluation and the delivery write them, around ``now``:
    an open incident (a stale symbol, delivered by the webhook), an incident resolved (its end delivered
    too), a market alert 30 minutes ago (the webhook delivered it, e-mail failed three times) and one
    two days ago (outside the dashboard's recent window)."""
    if not symbols:
        return [], []
    first, last = symbols[0], symbols[-1]

    def alert(kind: str, rule: str, subject: str, message: str, fired: timedelta, **extra: object) -> dict:
        row = {"alert_id": alert_id(kind, rule, subject, fired), "kind": kind, "rule_id": rule, "subject": subject}
        row |= {"message": message, "event_time": now - fired, "fired_at": now - fired, "resolved_at": None}
        return row | extra

    stale = alert(PIPELINE, "stale_symbol", last, f"{last}: no closed 1m candle for 12 min", timedelta(minutes=10))
    reconnects = alert(
        PIPELINE, "reconnect_storm", "shard-0", "shard-0 reconnected 6 times in 10 min", timedelta(hours=3)
    )
    reconnects["resolved_at"] = now - timedelta(hours=2)
    cross = alert(
        MARKET,
        f"{first.lower()}-cross",
        f"{first} 1m",
        f"{first.lower()}-cross: {first} 1m: close crosses 60000 (up); close 60000.12345678",
        timedelta(minutes=30),
        symbol=first,
        interval="1m",
        open_time=now - timedelta(minutes=31),
        value="60000.12345678",
    )
    old = alert(MARKET, f"{first.lower()}-old", f"{first} 1h", "an alert of two days ago", timedelta(days=2))
    deliveries = [
        _delivery(stale, "webhook", FIRED, 1, now - timedelta(minutes=10), None),
        _delivery(reconnects, "webhook", FIRED, 1, now - timedelta(hours=3), None),
        _delivery(reconnects, "webhook", RESOLVED, 2, now - timedelta(hours=2), None),
        _delivery(cross, "webhook", FIRED, 1, now - timedelta(minutes=30), None),
        _delivery(cross, "email", FIRED, 3, None, "SMTP 127.0.0.1:8025: connection refused"),
        _delivery(old, "webhook", FIRED, 1, now - timedelta(days=2), None),
    ]
    return [stale, reconnects, cross, old], deliveries


def _delivery(
    alert: dict, channel: str, event: str, attempts: int, delivered: datetime | None, error: str | None
) -> dict[str, object]:
    last_attempt = delivered or alert["fired_at"] + timedelta(minutes=attempts)
    return {"alert_id": alert["alert_id"], "channel": channel, "event": event, "attempts": attempts} | {
        "delivered_at": delivered,
        "last_error": error,
        "last_attempt_at": last_attempt,
    }


def _window(
    exchange: str, symbol: str, start: datetime, counts: tuple[int, int, int, int], holes: list[int], now: datetime
) -> dict[str, object]:
    expected, present_before, filled, missing = counts
    assert expected == present_before + filled + len(holes) + missing
    return {
        "exchange": exchange,
        "symbol": symbol,
        "window_start": start,
        "window_end": start + timedelta(hours=1),
        "expected": expected,
        "present_before": present_before,
        "filled": filled,
        "holes": json.dumps(holes),
        "hole_count": len(holes),
        "refused_count": 0,
        "missing": missing,
        "checked_at": now,
        "loaded_at": now,
    }


def _audit(symbol: str, interval: str, open_time: datetime, status: str, differences: str, now: datetime) -> dict:
    return {
        "symbol": symbol,
        "interval": interval,
        "open_time": open_time,
        "status": status,
        "differences": differences,
        "audited_at": now,
    }


def snapshot_with_candles(
    path: Path,
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
    minutes: int = 120,
    start: datetime = START,
    exchange: str = "sandbox",
    health: bool = True,
    now: datetime | None = None,
    incomplete: frozenset[int] = frozenset(),
    gaps: frozenset[int] = frozenset(),
) -> SnapshotFacts:
    """Write a published snapshot at ``path`` (replacing it atomically): ``minutes`` 1m candles per symbol.

    ``minutes=10_000`` gives 10,000 1m candles per symbol (about a second to write). ``health=False``
    leaves the stream, completeness, audit and alerts tables empty. ``now`` (default: the last candle's
    close) stamps the heartbeats, the audit and the pipeline row. The minutes (0-based) in
    ``incomplete`` have trades but ids missing before them; those in ``gaps`` no trade and no prices.
    """
    end = start + timedelta(minutes=minutes)
    now = end if now is None else now
    loaded_at = now - timedelta(seconds=2)
    last_close: dict[str, Decimal] = {}

    def fill(connection: duckdb.DuckDBPyConnection) -> None:
        for symbol in symbols:
            rows = _minute_rows(symbol, minutes, start, loaded_at, incomplete, gaps)
            last_close[symbol] = next(row["close"] for row in reversed(rows) if row["close"] is not None)  # type: ignore[assignment]
            for interval in INTERVAL_NAMES:
                width = INTERVAL_MINUTES[interval]
                rolled = rows if width == 1 else roll_up(rows, timedelta(minutes=width))
                _insert(connection, f"candles_{interval}", rolled)
        if health:
            for table, rows in _health_rows(symbols, start, end, now).items():
                _insert(connection, table, rows)
        connection.execute(
            "insert into pipeline values (?, ?, ?, (select max(last_loaded_at) from candles_1m))",
            [exchange, now, loaded_at],
        )

    _publish(path, fill)
    return SnapshotFacts(path, tuple(symbols), minutes, start, end, last_close, exchange)  # type: ignore[arg-type]


def write_snapshot(
    path: Path, candles: dict[str, list[dict[str, object]]], loaded_at: datetime, exchange: str = "sandbox"
) -> Path:
    """A published snapshot holding ``candles`` (interval -> rows; a missing column is null, but
    last_loaded_at and built_at are ``loaded_at`` when absent) and a pipeline row; nothing else."""

    def fill(connection: duckdb.DuckDBPyConnection) -> None:
        for interval, rows in candles.items():
            stamped = [{"last_loaded_at": loaded_at, "built_at": loaded_at} | row for row in rows]
            _insert(connection, f"candles_{interval}", stamped)
        connection.execute(
            "insert into pipeline values (?, ?, ?, (select max(last_loaded_at) from candles_1m))",
            [exchange, loaded_at, loaded_at],
        )

    _publish(path, fill)
    return path


def empty_snapshot(path: Path, exchange: str = "sandbox") -> Path:
    """A published snapshot of a fresh warehouse: every table empty, one pipeline row without loads."""
    _publish(
        path, lambda connection: connection.execute("insert into pipeline values (?, now(), null, null)", [exchange])
    )
    return path


def _publish(path: Path, fill: Callable[[duckdb.DuckDBPyConnection], object]) -> None:
    """The snapshot's tables written into a private file by ``fill``, then moved onto ``path`` at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        with duckdb.connect(str(temporary)) as connection:
            create_empty_snapshot_tables(connection)
            fill(connection)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _table_contents(connection: duckdb.DuckDBPyConnection, table: str) -> tuple[list[tuple], list[tuple]]:
    """(column names and types, rows sorted) of ``table``."""
    catalog, schema, name = table.split(".")
    columns = connection.execute(
        "select column_name, data_type from duckdb_columns() where database_name = ? and schema_name = ? "
        "and table_name = ? order by column_index",
        [catalog, schema, name],
    ).fetchall()
    return columns, sorted(connection.execute(f"select * from {table}").fetchall(), key=repr)


def assert_snapshot_equals_warehouse(snapshot: Path, warehouse: Path) -> None:
    """Every table the snapshot copies equals the warehouse's, column types and rows exactly (Decimals
    equal as Decimals); a table the warehouse lacks is empty in the snapshot with its columns."""
    with duckdb.connect(":memory:") as connection:
        connection.execute(f"attach '{snapshot}' as snap (read_only)")
        connection.execute(f"attach '{warehouse}' as wh (read_only)")
        existing = set(
            connection.execute(
                "select schema_name, table_name from duckdb_tables() where database_name = 'wh'"
            ).fetchall()
        )
        for name, (schema, table, columns) in COPIED_TABLES.items():
            copied = _table_contents(connection, f"snap.main.{name}")
            if (schema, table) in existing:
                assert copied == _table_contents(connection, f"wh.{schema}.{table}"), name
            else:
                assert copied[1] == [], name
                assert [column for column, _ in copied[0]] == [column for column, _ in columns], name
        pipeline = connection.execute("select last_load_at, marts_loaded_at from snap.main.pipeline").fetchall()
        assert len(pipeline) == 1, pipeline
        assert pipeline[0] == (
            _newest(connection, existing, "raw", "load_ledger", "loaded_at"),
            _newest(connection, existing, "marts", "candles_1m", "last_loaded_at"),
        ), pipeline


def _newest(connection: duckdb.DuckDBPyConnection, existing: set[tuple], schema: str, table: str, column: str):
    """The warehouse's latest ``column`` of ``schema.table``; None when it has no such table."""
    if (schema, table) not in existing:
        return None
    return connection.execute(f"select max({column}) from wh.{schema}.{table}").fetchone()[0]
