"""Warehouse load: DuckDB throughput from local Parquet, and what a load costs as the ledger grows.

1. Throughput: 20 stream files of 250,000 trades each (5,000,000 trades) in a local lake, loaded
   into an empty DuckDB warehouse by ``load_lake``. Target (issue 5): at least 1,000,000 trades/s.
2. Growth: a lake and ledger that already hold N files (100, then 100,000), then 100 new files
   announced by a stream's write marker; the second load is timed (median of a few). Target: the
   100,000 case costs at most 1.5 times the 100 case.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from include.lake.markers import MarkerWriter
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, trade_objects
from include.timeutil import HOUR_US
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
TARGET_TRADES_PER_SECOND = 1_000_000
TARGET_GROWTH_RATIO = 1.5


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


def throughput(work: Path) -> float:
    lake = LocalStore(work / "lake")
    put_files(lake, files=20, per_file=250_000, first_hour=0, files_per_hour=4)
    with DuckDBWarehouse(work / "throughput.duckdb") as warehouse:
        began = time.perf_counter()
        result = load_lake(lake, warehouse)
        seconds = time.perf_counter() - began
    rate = result.rows_loaded / seconds
    print(f"loaded {result.files_loaded} files, {result.rows_loaded:,} trades in {seconds:.2f} s: {rate:,.0f} trades/s")
    return rate


def load_with_history(work: Path, history: int, rounds: int = 5) -> float:
    """Median seconds to load 100 new announced files when ``history`` files are already loaded."""
    lake = LocalStore(work / f"lake-{history}")
    began = time.perf_counter()
    put_files(lake, files=history, per_file=10, first_hour=0, files_per_hour=100, durable=False)
    built = time.perf_counter() - began
    timings = []
    with DuckDBWarehouse(work / f"history-{history}.duckdb") as warehouse:
        began = time.perf_counter()
        first = load_lake(lake, warehouse)  # the first load lists the whole lake
        assert first.files_loaded == history, first.summary()
        print(f"history of {history:,} files: written in {built:.1f} s, loaded in {time.perf_counter() - began:.1f} s")
        stream = MarkerWriter(lake, "stream-bench")
        next_hour = history // 100 + 1
        for round_ in range(rounds):
            first_id = (history + round_ * 100) * 10 + 1
            keys = put_files(
                lake, 100, per_file=10, first_hour=next_hour + round_, files_per_hour=100, first_id=first_id
            )
            stream.mark(keys)
            began = time.perf_counter()
            result = load_lake(lake, warehouse)
            timings.append(time.perf_counter() - began)
            assert result.files_loaded == 100, result.summary()
    median = statistics.median(timings)
    print(f"100 new files with {history:,} already in the ledger: {median * 1000:.1f} ms (median of {rounds})")
    return median


def main() -> bool:
    print("\n== load: lake into DuckDB ==", flush=True)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        rate = throughput(work)
        small = load_with_history(work, 100)
        large = load_with_history(work, 100_000)
    ratio = large / small
    print(f"throughput: {rate:,.0f} trades/s (target >= {TARGET_TRADES_PER_SECOND:,})")
    print(f"cost with 100,000 vs 100 files in the ledger: {ratio:.2f} (target <= {TARGET_GROWTH_RATIO})")
    return rate >= TARGET_TRADES_PER_SECOND and ratio <= TARGET_GROWTH_RATIO


if __name__ == "__main__":
    import sys

    sys.exit(0 if main() else 1)
