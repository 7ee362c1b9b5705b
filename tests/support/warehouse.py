"""A DuckDB warehouse in tests: what it holds, compared with the lake, and faults injected into it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from include.lake.trades import read_table
from tests.support.trades import lake_rows


def warehouse_rows(path: Path) -> list[tuple]:
    """The rows of a DuckDB warehouse's raw.trades, in the columns ``lake_rows`` gives."""
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(
            "select symbol, trade_id, price, quantity, quote_quantity, trade_time, is_buyer_maker, source "
            "from raw.trades"
        ).fetchall()


def ledger(path: Path) -> dict[str, tuple]:
    """A DuckDB warehouse's load ledger: file key -> (size, etag, row count)."""
    with duckdb.connect(str(path), read_only=True) as connection:
        rows = connection.execute("select file_key, size, etag, row_count from raw.load_ledger").fetchall()
    return {key: (size, etag, count) for key, size, etag, count in rows}


def assert_exactly_the_lake(lake, path: Path) -> None:
    """raw.trades holds every lake row once, exactly, and the ledger names every lake file once."""
    rows = warehouse_rows(path)
    assert len(rows) == len(set(rows)), "a row was loaded twice"
    assert set(rows) == lake_rows(lake)
    assert all(isinstance(row[2], Decimal) for row in rows), "prices must be exact decimals"
    files = {info.key: info for info in lake.list("trades/")}
    entries = ledger(path)
    assert set(entries) == set(files)
    for key, (size, etag, count) in entries.items():
        assert (size, etag) == (files[key].size, files[key].etag)
        assert count == len(read_table(lake.get(key)))


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
