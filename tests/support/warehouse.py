"""A warehouse in tests: what it holds, compared with the lake, and faults injected into it (DuckDB's
connection, or the Snowflake connection fakesnow stands in for)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from snowflake.connector.errors import ProgrammingError

from include.candles import INTERVAL_NAMES, INTERVALS, KLINE_DECIMALS
from include.ingest.batcher import MicroBatcher, SymbolStatus
from include.lake.keys import gap_fill_key
from include.lake.trades import read_table
from include.repair.ledger import WindowReport, write_report
from include.timeutil import from_us
from include.warehouse.snapshot import CANDLE_TABLE_COLUMNS
from tests.support.trades import lake_rows

# fakesnow (the test double) lets DuckDB's own error through for a file it cannot read, where
# Snowflake raises ProgrammingError: that knowledge stays in the tests, not in the product.
FAKESNOW_FILE_ERRORS = (ProgrammingError, duckdb.Error)
# The Snowflake setup versions an object owner applies (--objects-only); the others are account level.
SNOWFLAKE_OBJECT_VERSIONS = ["V002", "V004", "V006", "V008", "V010", "V012"]


def warehouse_rows(path: Path) -> list[tuple]:
    """The rows of a DuckDB warehouse's raw.trades, in the columns ``lake_rows`` gives."""
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(
            "select symbol, trade_id, price, quantity, quote_quantity, trade_time, is_buyer_maker, source "
            "from raw.trades"
        ).fetchall()


def ledger_entries(execute: Callable[..., list[tuple]]) -> dict[str, tuple[int, str, int]]:
    """A warehouse's load ledger, on either backend (``execute`` runs SQL): file key -> (size, etag, row count)."""
    rows = execute("select file_key, size, etag, row_count from raw.load_ledger")
    return {key: (int(size), etag, int(count)) for key, size, etag, count in rows}


def ledger(path: Path) -> dict[str, tuple[int, str, int]]:
    """A DuckDB warehouse's load ledger: file key -> (size, etag, row count)."""
    with duckdb.connect(str(path), read_only=True) as connection:
        return ledger_entries(lambda sql: connection.execute(sql).fetchall())


def assert_ledger_is_the_lake(lake, entries: dict[str, tuple[int, str, int]]) -> None:
    """The ledger names every lake trade file once, with its size, its ETag and its rows."""
    files = {info.key: info for info in lake.list("trades/")}
    assert set(entries) == set(files)
    for key, (size, etag, count) in entries.items():
        assert (size, etag) == (files[key].size, files[key].etag)
        assert count == len(read_table(lake.get(key)))


def assert_exactly_the_lake(lake, path: Path) -> None:
    """raw.trades holds every lake row once, exactly, and the ledger names every lake file once."""
    rows = warehouse_rows(path)
    assert len(rows) == len(set(rows)), "a row was loaded twice"
    assert set(rows) == lake_rows(lake)
    assert all(isinstance(row[2], Decimal) for row in rows), "prices must be exact decimals"
    assert_ledger_is_the_lake(lake, ledger(path))


class Crash(RuntimeError):
    """What a faulty connection raises in place of a statement."""


class FaultyConnection:
    """A DuckDB connection (whose methods cannot be patched) whose ``fail_at``-th execute fails.

    ``on_fault`` runs in place of that statement (a killed process passes one that kills it);
    otherwise, or if it returns, ``Crash`` is raised. Every statement is recorded, so a clean run
    (``fail_at=None``) tells how many statements there are to fail at.
    """

    def __init__(self, real: Any, fail_at: int | None = None, on_fault: Callable[[], None] | None = None) -> None:
        self.real, self.fail_at, self.on_fault = real, fail_at, on_fault
        self.statements: list[str] = []

    def execute(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        if len(self.statements) == self.fail_at:
            if self.on_fault is not None:
                self.on_fault()
            raise Crash(f"crash at statement {self.fail_at}: {sql}")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class DyingConnection:
    """A Snowflake connection (fakesnow's) that dies at the first statement ``dies_at`` picks.

    That statement and every later one (a rollback included) raise ``Crash``, as for a process
    killed there: nothing more reaches Snowflake. Closing the real connection then ends the session
    with its transaction open and uncommitted, as Snowflake ends a dead client's session.
    """

    def __init__(self, real: Any, dies_at: Callable[[str], bool]) -> None:
        self.real, self.dies_at = real, dies_at
        self.died_at: str | None = None

    def cursor(self) -> _DyingCursor:
        return _DyingCursor(self, self.real.cursor())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _DyingCursor:
    def __init__(self, connection: DyingConnection, real: Any) -> None:
        self.connection, self.real = connection, real

    def execute(self, sql: str, params: Any = None) -> Any:
        if self.connection.died_at is None and self.connection.dies_at(sql):
            self.connection.died_at = sql
        if self.connection.died_at is not None:
            raise Crash(f"the connection died at: {self.connection.died_at}")
        return self.real.execute(sql, params)

    def __enter__(self) -> _DyingCursor:
        return self

    def __exit__(self, *_: object) -> None:
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def forget_load_history(execute: Callable[..., list[tuple]]) -> int:
    """What 64 days do to Snowflake's load history of raw.trades, done to fakesnow's model of it
    (a table behind information_schema.load_history, which Snowflake itself would never let one
    delete from). The number of files forgotten."""
    (forgotten,) = execute("delete from information_schema.load_history where table_name = 'TRADES'")[0]
    return int(forgotten)


def as_loaded_before_the_ledger(warehouse, lake_url: str) -> list[str]:
    """A Snowflake warehouse (fakesnow's) as the code before V010 left it, then upgraded: its raw.trades,
    cursor and load history kept, its ledger and adoption flag dropped with the record of the versions
    that made them (V010, V012), then the setup that applies those again. The versions applied."""
    warehouse.execute("drop table raw.load_ledger")
    warehouse.execute("drop table raw.ledger_adopted")
    warehouse.execute("delete from raw.schema_migrations where version in ('V010', 'V012')")
    return warehouse.setup(lake_url, "cryptoflow_lake", account_level=False)


def loaded_at_of_each_file(lake, execute: Callable[..., list[tuple]]) -> dict[str, set]:
    """Each lake trade file -> the distinct raw.trades.loaded_at of its rows (``execute`` runs SQL)."""
    stamps = {}
    for info in lake.list("trades/"):
        table = read_table(lake.get(info.key), ["symbol", "trade_id"])
        symbol, ids = table["symbol"][0].as_py(), table["trade_id"].to_pylist()
        rows = execute(
            f"select distinct loaded_at from raw.trades where symbol = '{symbol}' "
            f"and trade_id between {min(ids)} and {max(ids)}"
        )
        stamps[info.key] = {row[0] for row in rows}
    return stamps


def write_heartbeats(lake, last_trades: dict[str, tuple[int, int] | None], connection: dict[str, object]) -> None:
    """The stream's own heartbeats (MicroBatcher.write_heartbeats): symbol -> (last id, last time µs) or None."""
    batcher = MicroBatcher(lake, frozenset(last_trades), "test-writer")
    for symbol, last in last_trades.items():
        if last is not None:
            batcher.status[symbol] = SymbolStatus(last_trade_id=last[0], last_trade_time_us=last[1], trades_written=1)
        batcher.connection_states[symbol] = connection
    batcher.write_heartbeats()


def write_window(
    lake,
    symbol: str,
    start: datetime,
    filled: int = 1,
    holes: tuple[int, ...] = (),
    refused: int = 0,
    ids: tuple[int, int] = (100, 110),
    end: datetime | None = None,
) -> WindowReport:
    """A completeness record of one window (an hour unless ``end``) whose expected ids are ``ids``
    ([first_id, end_id): 10 by default), written by the ledger's own writer."""
    refusals: list[dict[str, object]] = [
        {"id": 90 + n, "reason": "too many decimals", "raw": "{}"} for n in range(refused)
    ]
    first_id, end_id = ids
    expected = end_id - first_id
    report = WindowReport(
        symbol=symbol,
        start=start.isoformat(),
        end=(end or start + timedelta(hours=1)).isoformat(),
        first_id=first_id,
        end_id=end_id,
        expected=expected,
        present_before=expected - filled - len(holes) - refused,
        filled=filled,
        holes=list(holes),
        missing=refused,
        refused=refusals,
    )
    write_report(lake, report, start)
    return report


def write_gap_fill(
    lake,
    symbol: str,
    first_id: int,
    last_id: int,
    since: datetime | None = None,
    holes: tuple[int, ...] = (),
    missing: int = 0,
    detected: datetime | None = None,
) -> dict[str, object]:
    """A live gap fill's record (status/gap_fills/...), as the fill_gaps DAG writes it (docs/architecture.md,
    "The live edge"): ids ``first_id..last_id`` were the gap; ``since``, when given, is the time at or
    after which ``first_id`` is the first trade. The body written."""
    detected = detected or since or datetime(2026, 11, 24, tzinfo=UTC)
    filled = max(0, last_id - first_id + 1 - len(holes) - missing)
    body = {
        "symbol": symbol,
        "first_id": first_id,
        "last_id": last_id,
        "since": None if since is None else since.isoformat(),
        "filled": filled,
        "holes": list(holes),
        "missing": missing,
        "files": [],
        "refused": [],
        "checked_at": datetime.now(UTC).isoformat(),
    }
    lake.put(gap_fill_key(symbol, detected, first_id, last_id), json.dumps(body).encode())
    return body


def create_candle_marts(warehouse) -> None:
    """marts.candles_<interval> with the contract's columns (include/warehouse/snapshot.py CANDLE_TABLE_COLUMNS),
    empty, on either backend: for tests that fill them by hand."""
    warehouse.execute("create schema if not exists marts")
    for interval in INTERVAL_NAMES:
        body = ", ".join(
            f"{name} {kind.replace('timestamptz', warehouse.dialect.timestamp_type)}"
            for name, kind in CANDLE_TABLE_COLUMNS
        )
        warehouse.execute(f"create table if not exists marts.candles_{interval} ({body})")


def fill_candles_from_exchange(warehouse, exchange, symbol: str, start_us: int, end_us: int) -> int:
    """marts.candles_<interval> as the dbt marts shape them, filled with the exchange's own klines of
    ``[start_us, end_us)``, each complete: a warehouse that agrees with the exchange. The number of
    candles written."""
    dialect, written = warehouse.dialect, 0
    p, ts = dialect.placeholder, dialect.timestamp_type
    create_candle_marts(warehouse)
    names = [name for name, _ in CANDLE_TABLE_COLUMNS]
    for interval, width in ((i.name, i.length_us) for i in INTERVALS):
        rows = exchange.klines(symbol, interval, start_time_us=start_us, end_time_us=end_us - 1, limit=1000)
        for row in rows:
            open_us = int(row[0])
            values = {
                "symbol": symbol,
                "open_time": from_us(open_us).isoformat(),
                "close_time": from_us(open_us + width - 1000).isoformat(),  # Binance's close time: the last ms
                **{name: Decimal(row[index]) for name, index in KLINE_DECIMALS},
                "trade_count": int(row[8]),
                "first_trade_id": None,
                "last_trade_id": None,
                "last_trade_time": None,
                "is_closed": open_us + width <= end_us,
                "is_complete": True,
                "last_loaded_at": from_us(end_us).isoformat(),
                "built_at": from_us(end_us).isoformat(),
            }
            marks = [f"cast({p} as {ts})" if kind == "timestamptz" else p for _, kind in CANDLE_TABLE_COLUMNS]
            warehouse.execute(
                f"insert into marts.candles_{interval} ({', '.join(names)}) values ({', '.join(marks)})",
                [values[name] for name in names],
            )
            written += 1
    return written
