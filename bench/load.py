"""Warehouse load: DuckDB throughput from local Parquet, and what a load costs as the ledger grows.

1. Throughput: 20 stream files of 250,000 trades each (5,000,000 trades) in a local lake, loaded
   into an empty DuckDB warehouse by ``load_lake``. Target (issue 5): at least 1,000,000 trades/s.
2. Growth: a lake and ledger that already hold N files (100, then 100,000), then 100 new files
   announced by a stream's write marker; the second load is timed (median of a few). Target: the
   100,000 case costs at most 1.5 times the 100 case.

``--smoke`` runs both at a tiny size (the targets are reported, not enforced; the checks are).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.report import Report, Target
from include.lake.markers import MarkerWriter
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, trade_objects
from include.timeutil import HOUR_US
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
TARGET_TRADES_PER_SECOND = 1_000_000
TARGET_GROWTH_RATIO = 1.5


@dataclass(frozen=True)
class Size:
    files: int  # throughput: stream files ...
    per_file: int  # ... of this many trades
    small_history: int  # growth: files already loaded, before ...
    large_history: int
    new_files: int  # ... this many new files are announced and loaded
    rounds: int


FULL = Size(files=20, per_file=250_000, small_history=100, large_history=100_000, new_files=100, rounds=5)
SMOKE = Size(files=2, per_file=1_000, small_history=10, large_history=50, new_files=10, rounds=2)


@dataclass
class Checks:
    """What the loads must get right at any size; each benchmark step records into it."""

    all_trades_once: bool = True
    every_file_once: bool = True


def trades(first_id: int, count: int, start_us: int, spacing_us: int) -> TradeColumns:
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    return TradeColumns(
        "BTCUSDT",
        ids,
        6_000_000_000_000 + (ids * 7919) % 100_000_000,
        1 + (ids * 104_729) % 10_000_000,
        start_us + (ids - first_id) * spacing_us,
        ids % 3 == 0,
    )


def put_files(
    lake: LocalStore,
    files: int,
    per_file: int,
    first_hour: int,
    files_per_hour: int,
    first_id: int = 1,
    durable: bool = True,
) -> list[str]:
    """``files`` stream files of ``per_file`` trades, ``files_per_hour`` to each hour partition.

    ``durable=False`` skips the lake's fsync per object: only for building a large history fast.
    """
    keys = []
    for n in range(files):
        hour_start = START_US + (first_hour + n // files_per_hour) * HOUR_US
        spacing = HOUR_US // (files_per_hour * per_file)
        start = hour_start + (n % files_per_hour) * per_file * spacing
        for key, data in trade_objects(trades(first_id + n * per_file, per_file, start, spacing), "stream", START_US):
            if durable:
                lake.put(key, data)
            else:
                path = lake.root / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            keys.append(key)
    return keys


def throughput(work: Path, size: Size, checks: Checks) -> float:
    lake = LocalStore(work / "lake")
    put_files(lake, files=size.files, per_file=size.per_file, first_hour=0, files_per_hour=4)
    with DuckDBWarehouse(work / "throughput.duckdb") as warehouse:
        began = time.perf_counter()
        result = load_lake(lake, warehouse)
        seconds = time.perf_counter() - began
        rows, distinct = warehouse.execute("select count(*), count(distinct trade_id) from raw.trades")[0]
    total = size.files * size.per_file
    checks.all_trades_once &= result.rows_loaded == rows == distinct == total
    checks.every_file_once &= result.files_loaded == size.files
    print(f"loaded {result.files_loaded} files, {result.rows_loaded:,} trades in {seconds:.2f} s")
    return result.rows_loaded / seconds


def load_with_history(work: Path, history: int, size: Size, checks: Checks) -> float:
    """Median seconds to load ``size.new_files`` new announced files when ``history`` files are loaded."""
    lake = LocalStore(work / f"lake-{history}")
    began = time.perf_counter()
    put_files(lake, files=history, per_file=10, first_hour=0, files_per_hour=100, durable=False)
    built = time.perf_counter() - began
    timings = []
    with DuckDBWarehouse(work / f"history-{history}.duckdb") as warehouse:
        began = time.perf_counter()
        first = load_lake(lake, warehouse)  # the first load lists the whole lake
        checks.every_file_once &= first.files_loaded == history
        print(f"history of {history:,} files: written in {built:.1f} s, loaded in {time.perf_counter() - began:.1f} s")
        stream = MarkerWriter(lake, "stream-bench")
        next_hour = history // 100 + 1
        for round_ in range(size.rounds):
            first_id = (history + round_ * size.new_files) * 10 + 1
            keys = put_files(
                lake, size.new_files, per_file=10, first_hour=next_hour + round_, files_per_hour=100, first_id=first_id
            )
            stream.mark(keys)
            began = time.perf_counter()
            result = load_lake(lake, warehouse)
            timings.append(time.perf_counter() - began)
            checks.every_file_once &= result.files_loaded == size.new_files
        rows, distinct = warehouse.execute("select count(*), count(distinct trade_id) from raw.trades")[0]
        checks.all_trades_once &= rows == distinct == (history + size.rounds * size.new_files) * 10
    return statistics.median(timings)


def main(smoke: bool = False) -> bool:
    size = SMOKE if smoke else FULL
    report = Report(
        f"load: lake into DuckDB ({size.files * size.per_file:,} trades; ledgers of {size.small_history:,}"
        f" and {size.large_history:,} files)"
    )
    checks = Checks()
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        rate = throughput(work, size, checks)
        small = load_with_history(work, size.small_history, size, checks)
        large = load_with_history(work, size.large_history, size, checks)
    target = Target(">=", TARGET_TRADES_PER_SECOND)
    report.figure("load throughput", rate, "trades/s", target=target)
    new = f"{size.new_files} new files"
    report.figure(
        f"{new}, {size.small_history:,} in the ledger", small * 1000, "ms", digits=1, note=f"median of {size.rounds}"
    )
    report.figure(
        f"{new}, {size.large_history:,} in the ledger", large * 1000, "ms", digits=1, note=f"median of {size.rounds}"
    )
    report.figure("cost ratio, large / small ledger", large / small, digits=2, target=Target("<=", TARGET_GROWTH_RATIO))
    report.check("every file loaded exactly once", checks.every_file_once)
    report.check("every trade loaded exactly once", checks.all_trades_once)
    return report.passed(enforce_targets=not smoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny size, targets not enforced")
    sys.exit(0 if main(parser.parse_args().smoke) else 1)
