"""Trades made up for warehouse tests: exact, varied decimals, written to a lake and read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from include.lake.keys import TRADES_PREFIX
from include.lake.markers import mark_written
from include.lake.split import split_batches
from include.lake.store import LocalStore, ObjectInfo
from include.lake.trades import TradeColumns, read_trades, write_trades
from include.timeutil import HOUR_US

START_US = 1_795_514_400_000_000  # 2026-11-24T10:00:00Z


def columns(symbol: str, first_id: int, count: int, start_us: int = START_US) -> TradeColumns:
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    return trade_columns(symbol, ids, start_us + (ids - first_id) * 1_000_000)


def trade_columns(symbol: str, ids: np.ndarray, times_us: np.ndarray) -> TradeColumns:
    """Trades ``ids`` at ``times_us``: prices 60000.xx with varied 8-decimal tails, varied quantities and sides."""
    ids = np.asarray(ids, dtype=np.int64)
    return TradeColumns(
        symbol,
        ids,
        6_000_000_000_000 + (ids * 7919) % 100_000_000,
        1 + (ids * 104_729) % 10_000_000,
        np.asarray(times_us, dtype=np.int64),
        ids % 3 == 0,
    )


def fill_lake(lake, files: int = 6, per_file: int = 500) -> None:
    for symbol, offset in (("BTCUSDT", 1), ("ETHUSDT", 10_000)):
        for n in range(files):
            source = "stream" if n % 2 else "backfill"
            write_trades(lake, columns(symbol, offset + n * per_file, per_file), source, START_US)


def lake_rows(lake) -> set[tuple]:
    rows = set()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for row in read_trades(lake, symbol).to_pylist():
            rows.add(
                (
                    row["symbol"],
                    row["trade_id"],
                    row["price"],
                    row["quantity"],
                    row["quote_quantity"],
                    row["trade_time"],
                    row["is_buyer_maker"],
                    row["source"],
                )
            )
    return rows


def announce_new_files(lake, writer: str, files: int = 12, per_file: int = 500) -> list[str]:
    """``files`` more trade files over two symbols and several hours, named by ``writer``'s marker."""
    keys = []
    for n in range(files):
        symbol, first_id = ("BTCUSDT", 100_000) if n % 2 else ("ETHUSDT", 200_000)
        start_us = START_US + (1 + n % 3) * HOUR_US
        keys += write_trades(lake, columns(symbol, first_id + n * per_file, per_file, start_us), "stream", START_US)
    mark_written(lake, writer, keys)
    return keys


class SplitAfterFirstListing(LocalStore):
    """A local lake where the hourly split runs just after a reader's first listing of trade files:
    between its listing of the stream batches and of the symbol's partitions, whichever comes first."""

    def __init__(self, root: Path, before_us: int) -> None:
        super().__init__(root)
        self.before_us = before_us
        self.split = False

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        yield from super().list(prefix)
        if prefix.startswith(TRADES_PREFIX) and not self.split:
            self.split = True
            split_batches(LocalStore(self.root), self.before_us)
