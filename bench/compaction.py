"""The lake's files per symbol-day, before and after compaction (issue 22).

Two days of one symbol. First as a stream that writes a file per symbol per flush leaves it (the
writer before batches, and what a lake written then still holds): a file per flush (every 5 s, the
stream's default) with the trades of those 5 s, and each hour verified complete in the repair
ledger as the repair leaves it. Then each hour is compacted (``compact_window``, what
``repair_gaps`` runs) and the files are counted again. Second as the stream writes it now: a batch
per flush holding the shard's symbols (here the symbol and ``OTHER_SYMBOLS`` quiet ones), split
hourly into a file per symbol-hour (``split_batches``, ``repair_gaps``' first task), then compacted.
Checks: every id of the day once, exact values unchanged, one file per hour. The smoke size is one
hour of a few flushes.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.report import Report
from include.ingest.worker import DEFAULT_FLUSH_SECONDS
from include.lake.keys import BATCH_PREFIX, symbol_prefix
from include.lake.split import split_batches
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, batch_object, read_trades, write_trades
from include.repair.compact import compact_window
from include.repair.ledger import WindowReport, write_report
from include.timeutil import HOUR_US, MICROS_PER_SECOND, from_us

SYMBOL = "BTCUSDT"
DAY_START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
TRADES_PER_SECOND = 2  # a quiet-to-middling Binance pair
FULL_HOURS, SMOKE_HOURS = 24, 1
SMOKE_FLUSHES = 12  # per hour, in smoke
OTHER_SYMBOLS = 9  # the rest of the shard in the batch scenario: a trade each per flush


def flush_columns(first_id: int, start_us: int, seconds: float) -> TradeColumns:
    """The trades of one flush: ``TRADES_PER_SECOND`` a second from ``start_us``, exact 8-decimal values."""
    count = int(seconds * TRADES_PER_SECOND)
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    times = start_us + (np.arange(count) * MICROS_PER_SECOND // TRADES_PER_SECOND)
    return TradeColumns(SYMBOL, ids, 9_000_000_000_000 + (ids * 7919) % 10**8, 1 + ids % 10**7, times, ids % 2 == 0)


def other_symbols(flush: int, start_us: int) -> list[TradeColumns]:
    """The shard's other symbols' trades of one flush: one each."""
    ids = np.array([flush + 1], dtype=np.int64)
    return [
        TradeColumns(f"Q{n:03d}USDT", ids, np.full(1, 10**8), np.full(1, 10**8), np.full(1, start_us), np.ones(1, bool))
        for n in range(OTHER_SYMBOLS)
    ]


def stream_hour(lake: LocalStore, hour_start_us: int, first_id: int, flushes: int, batches: bool = False) -> int:
    """One hour as the stream writes it (a file per flush, or with ``batches`` a batch per flush) and the
    ledger's complete report; the next id."""
    seconds = 3600 / flushes
    next_id = first_id
    for flush in range(flushes):
        start_us = hour_start_us + int(flush * seconds * MICROS_PER_SECOND)
        flushed_us = hour_start_us + int((flush + 1) * seconds * MICROS_PER_SECOND)
        columns = flush_columns(next_id, start_us, seconds)
        if batches:
            parts = [columns, *other_symbols(int(hour_start_us // HOUR_US) * flushes + flush, start_us)]
            key, data = batch_object(parts, "stream", flushed_us, "stream-bench", flushed_us)
            lake.put(key, data)
        else:
            write_trades(lake, columns, "stream", flushed_us)
        next_id += len(columns)
    start = from_us(hour_start_us)
    expected = next_id - first_id
    end = (start + timedelta(hours=1)).isoformat()
    write_report(lake, WindowReport(SYMBOL, start.isoformat(), end, first_id, next_id, expected, expected, 0), start)
    return next_id


def symbol_files(lake: LocalStore) -> int:
    return sum(1 for _ in lake.list(symbol_prefix(SYMBOL)))


def compact_day(lake: LocalStore, hours: int) -> float:
    """Compact each hour as ``repair_gaps`` does; the seconds it took."""
    started = time.perf_counter()
    for hour in range(hours):
        start = from_us(DAY_START_US + hour * HOUR_US)
        compact_window(lake, SYMBOL, start, start + timedelta(hours=1))
    return time.perf_counter() - started


def per_symbol_files(report: Report, work: Path, hours: int, flushes: int) -> None:
    lake = LocalStore(work / "per-symbol")
    next_id = 1
    for hour in range(hours):
        next_id = stream_hour(lake, DAY_START_US + hour * HOUR_US, next_id, flushes)
    before = read_trades(lake, SYMBOL)
    files_before = symbol_files(lake)
    seconds = compact_day(lake, hours)
    after = read_trades(lake, SYMBOL)
    files_after = symbol_files(lake)
    per_day = 24 / hours
    report.figure(
        "trade files per symbol-day, before", files_before * per_day, "files", note="a file per symbol and flush"
    )
    report.figure("trade files per symbol-day, after", files_after * per_day, "files")
    report.figure("compaction time per symbol-hour", seconds / hours, "s", digits=2, note=f"{next_id - 1:,} trades")
    report.check("one file per hour after", files_after == hours, f"{files_after} files for {hours} hours")
    check_rows(report, "", before, after, next_id)


def batches(report: Report, work: Path, hours: int, flushes: int) -> None:
    lake = LocalStore(work / "batches")
    next_id = 1
    for hour in range(hours):
        next_id = stream_hour(lake, DAY_START_US + hour * HOUR_US, next_id, flushes, batches=True)
    before = read_trades(lake, SYMBOL)
    written = sum(1 for _ in lake.list(BATCH_PREFIX))
    started = time.perf_counter()
    split_batches(lake, DAY_START_US + hours * HOUR_US)
    split_seconds = time.perf_counter() - started
    files_split = symbol_files(lake)
    compact_day(lake, hours)
    after = read_trades(lake, SYMBOL)
    per_day = 24 / hours
    shard = f"shared by the shard's {OTHER_SYMBOLS + 1} symbols"
    report.figure("batches, stream objects per shard-day", written * per_day, "objects", note=shard)
    report.figure("batches, files per symbol-day after the split", files_split * per_day, "files")
    report.figure("batches, files per symbol-day after compaction", symbol_files(lake) * per_day, "files")
    report.figure("batches, split time per hour", split_seconds / hours, "s", digits=2, note=shard)
    report.check("batches: no batch left", not list(lake.list(BATCH_PREFIX)))
    report.check("batches: one file per hour", symbol_files(lake) == hours, f"{symbol_files(lake)} files")
    check_rows(report, "batches: ", before, after, next_id)


def check_rows(report: Report, prefix: str, before: pa.Table, after: pa.Table, next_id: int) -> None:
    ids = after["trade_id"].to_numpy()
    report.check(f"{prefix}every id once", bool(np.array_equal(ids, np.arange(1, next_id))), f"{len(ids):,} rows")
    report.check(f"{prefix}rows unchanged", after.sort_by("trade_id").equals(before.sort_by("trade_id")))


def main(smoke: bool = False) -> bool:
    hours = SMOKE_HOURS if smoke else FULL_HOURS
    flushes = SMOKE_FLUSHES if smoke else int(3600 / DEFAULT_FLUSH_SECONDS)
    report = Report(f"compaction: one symbol's day ({hours} h, a file or a batch per {3600 / flushes:.0f} s flush)")
    with tempfile.TemporaryDirectory() as work:
        per_symbol_files(report, Path(work), hours, flushes)
        batches(report, Path(work), hours, flushes)
    return report.passed(enforce_targets=not smoke)
