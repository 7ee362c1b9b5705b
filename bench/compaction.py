"""The lake's files per symbol-day, before and after compaction (issue 22).

A day of one symbol as the stream leaves it: a file per flush (every 5 s, the stream's default) with
the trades of those 5 s, written through the product's own writer, and each hour verified complete
in the repair ledger as the repair leaves it. Then each hour is compacted (``compact_window``, what
``repair_gaps`` runs) and the files are counted again. Checks: every id of the day once, exact values
unchanged, one file per hour. The smoke size is one hour of a few flushes.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from bench.report import Report
from include.ingest.worker import DEFAULT_FLUSH_SECONDS
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, read_trades, write_trades
from include.repair.compact import compact_window
from include.repair.ledger import WindowReport, write_report
from include.timeutil import HOUR_US, MICROS_PER_SECOND, from_us

SYMBOL = "BTCUSDT"
DAY_START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
TRADES_PER_SECOND = 2  # a quiet-to-middling Binance pair
FULL_HOURS, SMOKE_HOURS = 24, 1
SMOKE_FLUSHES = 12  # per hour, in smoke


def flush_columns(first_id: int, start_us: int, seconds: float) -> TradeColumns:
    """The trades of one flush: ``TRADES_PER_SECOND`` a second from ``start_us``, exact 8-decimal values."""
    count = int(seconds * TRADES_PER_SECOND)
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    times = start_us + (np.arange(count) * MICROS_PER_SECOND // TRADES_PER_SECOND)
    return TradeColumns(SYMBOL, ids, 9_000_000_000_000 + (ids * 7919) % 10**8, 1 + ids % 10**7, times, ids % 2 == 0)


def stream_hour(lake: LocalStore, hour_start_us: int, first_id: int, flushes: int) -> int:
    """One hour as the stream writes it (a file per flush) and the ledger's complete report; the next id."""
    seconds = 3600 / flushes
    next_id = first_id
    for flush in range(flushes):
        columns = flush_columns(next_id, hour_start_us + int(flush * seconds * MICROS_PER_SECOND), seconds)
        write_trades(lake, columns, "stream", hour_start_us + int((flush + 1) * seconds * MICROS_PER_SECOND))
        next_id += len(columns)
    start = from_us(hour_start_us)
    expected = next_id - first_id
    end = (start + timedelta(hours=1)).isoformat()
    write_report(lake, WindowReport(SYMBOL, start.isoformat(), end, first_id, next_id, expected, expected, 0), start)
    return next_id


def main(smoke: bool = False) -> bool:
    hours = SMOKE_HOURS if smoke else FULL_HOURS
    flushes = SMOKE_FLUSHES if smoke else int(3600 / DEFAULT_FLUSH_SECONDS)
    report = Report(f"compaction: one symbol's day ({hours} h, a file per {3600 / flushes:.0f} s flush)")
    with tempfile.TemporaryDirectory() as work:
        lake = LocalStore(Path(work) / "lake")
        next_id = 1
        for hour in range(hours):
            next_id = stream_hour(lake, DAY_START_US + hour * HOUR_US, next_id, flushes)
        before = read_trades(lake, SYMBOL)
        files_before = sum(1 for _ in lake.list("trades/"))
        started = time.perf_counter()
        for hour in range(hours):
            start = from_us(DAY_START_US + hour * HOUR_US)
            compact_window(lake, SYMBOL, start, start + timedelta(hours=1))
        seconds = time.perf_counter() - started
        after = read_trades(lake, SYMBOL)
        files_after = sum(1 for _ in lake.list("trades/"))
    per_day = 24 / hours
    report.figure("trade files per symbol-day, before", files_before * per_day, "files")
    report.figure("trade files per symbol-day, after", files_after * per_day, "files")
    report.figure("compaction time per symbol-hour", seconds / hours, "s", digits=2, note=f"{next_id - 1:,} trades")
    report.check("one file per hour after", files_after == hours, f"{files_after} files for {hours} hours")
    ids = after["trade_id"].to_numpy()
    report.check("every id once", bool(np.array_equal(ids, np.arange(1, next_id))), f"{len(ids):,} rows")
    report.check("rows unchanged", after.sort_by("trade_id").equals(before.sort_by("trade_id")))
    return report.passed(enforce_targets=not smoke)
