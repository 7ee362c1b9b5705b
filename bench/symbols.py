"""Symbols: the objects the lake receives per hour as the stream grows from 2 to 40 to 400 symbols.

One sandbox exchange (on its own core) makes a market of 400 symbols, a few busy and most quiet, as
on Binance: the symbol of rank r trades ``20 / r`` times a second on average (``--symbol-rate``), so
BTCUSDT 20, ETHUSDT 10, the 40th symbol 0.5 and the 400th 0.05 (one trade in 20 s). For each count,
the real stream worker (``python -m bench.symbols_client``: ``include.ingest.run.run_worker``, one
writer, on the other core) streams the busiest N of them into an empty local lake for a fixed time
(60 s at full size) with the product's 5 s flush, through a store that counts every PUT by kind:
trade files, heartbeats, write markers, gap records, gap markers, quarantine. Printed per count: each
kind's count in the window, the objects per hour (extrapolated from the window; the start gaps a
new writer records once per symbol, and their markers, left out), PUTs, trades per second and trades
per trade file. Then ``load_lake`` loads what was written into a DuckDB warehouse whose cursor was
set on the empty lake (so it discovers by write marker, as in production), timed against the
window: below 1, the load keeps up. Then the hourly split (include/lake/split.py) turns the window's
batches into files per symbol-hour, timed, and a second load takes its files in (only the ids the
warehouse lacks: none). An hour's objects with the split are the writer's per hour plus, at most,
the split's two files per symbol that traded (one of the hour's batches, one of the batch that
reached into the hour from the one before) and its marker.

Target (issue 22): at most one trade file per shard (here: the one writer) per flush. Checks: every
trade written was loaded exactly once, before and after the split; no id is missing between a
symbol's first and last trade in the warehouse; every trade file counted is in the lake.
``--smoke`` streams each count for 2 s with a 1 s flush (the target is reported, not enforced).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CLIENT_CORE, REPO_ROOT, free_port, pinned, start_sandbox
from bench.report import Report, Target
from bench.symbols_client import KINDS
from include.lake.split import split_batches
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, write_trades
from include.timeutil import now_us
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake

BUSIEST_RATE = 20.0  # trades/s of the busiest symbol: the sandbox's default rate
NAMED = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
NOT_EXTRAPOLATED = ("gap records", "gap markers")  # a new writer's start gaps: once per symbol, not per hour
TARGET_FILES_PER_FLUSH = 1.0  # issue 22: at most one trade file per shard per flush
CLIENT_SLACK_SECONDS = 120.0  # the writer's start, its start-gap lookups and its last flush


@dataclass(frozen=True)
class Size:
    counts: tuple[int, ...]
    seconds: float  # streamed per count
    flush_seconds: float


FULL = Size(counts=(2, 40, 400), seconds=60.0, flush_seconds=5.0)
SMOKE = Size(counts=(2, 40, 400), seconds=2.0, flush_seconds=1.0)


def market(count: int) -> dict[str, float]:
    """The sandbox's symbols by rank, busiest first, each with its average trades per second."""
    names = [*NAMED, *(f"C{rank:03d}USDT" for rank in range(len(NAMED) + 1, count + 1))]
    return {name: BUSIEST_RATE / rank for rank, name in enumerate(names[:count], start=1)}


@dataclass
class Run:
    """One count's stream, as the writer counted it, and the load of what it wrote."""

    symbols: int
    offered: float  # the sandbox's average trades/s over these symbols
    client: dict[str, Any]
    load_seconds: float
    files_in_lake: int
    loaded: tuple[int, int, int]  # rows, distinct (symbol, trade_id), sum over symbols of last - first + 1
    split_files: int  # the hourly split's files of the window's batches: one per symbol that traded
    split_seconds: float
    rows_after_split: int  # raw.trades' rows after the split's files were loaded too

    @property
    def seconds(self) -> float:
        """The window: how long the writer streamed (its start and its last flush after it are not)."""
        return self.client["window"]

    def puts(self, kind: str) -> int:
        return self.client["puts"].get(kind, 0)

    @property
    def total_puts(self) -> int:
        return sum(self.client["puts"].values())

    @property
    def written(self) -> int:
        return self.client["stats"]["written"]

    @property
    def flushes(self) -> int:
        return self.client["stats"]["batches"]

    @property
    def steady_puts(self) -> int:
        """The PUTs of every kind that recurs with each flush: all but the start gaps' records and markers."""
        return sum(n for kind, n in self.client["puts"].items() if kind not in NOT_EXTRAPOLATED)

    @property
    def per_hour(self) -> float:
        return self.steady_puts * 3600 / self.seconds

    @property
    def per_hour_with_split(self) -> float:
        """The writer's objects per hour, and the split's at most: per symbol a file of its hour's batches
        and one of the batch that reached into it from the hour before, and a marker."""
        return self.per_hour + 2 * self.symbols + 1


def stream(port: int, symbols: list[str], size: Size, lake: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.symbols_client", "--port", str(port), "--symbols", ",".join(symbols)]
    command += ["--seconds", str(size.seconds), "--flush-seconds", str(size.flush_seconds), "--lake", str(lake)]
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        preexec_fn=pinned(CLIENT_CORE),
        timeout=size.seconds + CLIENT_SLACK_SECONDS,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the stream writer failed ({done.returncode}):\n{done.stderr[-5000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def warm_up(work: Path) -> None:
    """One tiny load, untimed: what a process pays on its first load (imports, thread pools) is not
    the first count's."""
    lake = LocalStore(work / "warm-up")
    columns = TradeColumns(
        "BTCUSDT", np.arange(1, 3), np.full(2, 100), np.full(2, 100), np.arange(2) + now_us(), np.ones(2, bool)
    )
    write_trades(lake, columns, "stream", now_us())
    with DuckDBWarehouse(work / "warm-up.duckdb") as warehouse:
        load_lake(lake, warehouse)


def measure(port: int, rates: dict[str, float], count: int, size: Size, work: Path) -> Run:
    symbols = list(rates)[:count]
    lake = LocalStore(work / f"lake-{count}")
    with DuckDBWarehouse(work / f"warehouse-{count}.duckdb") as warehouse:
        load_lake(lake, warehouse)  # the empty lake: from here on the load discovers by write marker
        client = stream(port, symbols, size, lake.root)
        began = time.perf_counter()
        load_lake(lake, warehouse)
        load_seconds = time.perf_counter() - began
        (loaded,) = warehouse.execute(
            "select (select count(*) from raw.trades), (select count(distinct (symbol, trade_id)) from raw.trades),"
            " (select coalesce(sum(last - first + 1), 0) from"
            "  (select max(trade_id) as last, min(trade_id) as first from raw.trades group by symbol))"
        )
        files = sum(1 for info in lake.list("trades/") if info.key.endswith(".parquet"))
        began = time.perf_counter()
        split = split_batches(lake, now_us() + 3_600_000_000)  # every batch: the window's hour(s), closed
        split_seconds = time.perf_counter() - began
        load_lake(lake, warehouse)
        ((rows_after_split,),) = warehouse.execute("select count(*) from raw.trades")
    offered = sum(rates[symbol] for symbol in symbols)
    written = client["stats"]["written"]
    print(f"{count} symbols streamed ({written:,} trades; the writer ran {client['seconds']:.1f} s in all)", flush=True)
    counts = (loaded[0], loaded[1], loaded[2])
    return Run(count, offered, client, load_seconds, files, counts, len(split.written), split_seconds, rows_after_split)


def report_run(report: Report, run: Run, size: Size) -> None:
    name = f"{run.symbols} symbols,"
    window = f"in {run.seconds:.0f} s"
    for kind in KINDS.values():
        note = f"{run.client['start_gaps']} start gaps of a new writer" if kind == "gap records" else window
        report.figure(f"{name} {kind}", run.puts(kind), "objects", note=note)
    extrapolated = f"extrapolated from {run.seconds:.0f} s, {' and '.join(NOT_EXTRAPOLATED)} left out"
    report.figure(f"{name} objects per hour", run.per_hour, "objects", note=extrapolated)
    report.figure(f"{name} PUTs per second", run.total_puts / run.seconds, "PUTs/s", digits=1, note="every kind")
    offered = f"the sandbox's average for these symbols: {run.offered:.1f}"
    report.figure(f"{name} trades per second", run.written / run.seconds, "trades/s", digits=1, note=offered)
    files = run.puts("trade files")
    report.figure(f"{name} trades per trade file", run.written / max(files, 1), "trades", digits=1)
    report.figure(
        f"{name} trade files per flush",
        files / max(run.flushes, 1),
        "files",
        digits=1,
        target=Target("<=", TARGET_FILES_PER_FLUSH),
        note=f"one writer (one shard), {run.flushes} flushes of {size.flush_seconds:g} s",
    )
    report.figure(
        f"{name} objects per flush", run.steady_puts / max(run.flushes, 1), "objects", digits=1, note="every kind"
    )
    report.figure(f"{name} load of the window", run.load_seconds, "s", digits=2, note=f"{run.files_in_lake:,} files")
    report.figure(f"{name} load / window", run.load_seconds / run.seconds, digits=3, note="below 1: it keeps up")
    report.figure(
        f"{name} split files",
        run.split_files,
        "objects",
        note=f"the window's batches, split in {run.split_seconds:.2f} s",
    )
    report.figure(
        f"{name} objects per hour with the split",
        run.per_hour_with_split,
        "objects",
        note="the writer's, and the hourly split's at most: two files per symbol, a marker",
    )


def report_checks(report: Report, runs: list[Run]) -> None:
    loaded = {run.symbols: f"{run.loaded[0]:,} of {run.written:,}" for run in runs}
    ok = all(run.loaded[0] == run.loaded[1] == run.written > 0 for run in runs)
    report.check("every trade written was loaded once", ok, f"symbols: rows loaded of written {loaded}")
    after = {run.symbols: f"{run.rows_after_split:,} of {run.written:,}" for run in runs}
    ok = all(run.rows_after_split == run.written for run in runs)
    report.check("the split's files loaded no trade twice", ok, f"symbols: rows after the split of written {after}")
    spans = {run.symbols: f"{run.loaded[0]:,} of {run.loaded[2]:,}" for run in runs}
    ok = all(run.loaded[0] == run.loaded[2] for run in runs)
    report.check("no id missing in any symbol's run", ok, f"symbols: trades of ids first..last {spans}")
    files = {run.symbols: f"{run.files_in_lake:,} of {run.puts('trade files'):,}" for run in runs}
    ok = all(run.files_in_lake == run.puts("trade files") for run in runs)
    report.check("every trade file counted is in the lake", ok, f"symbols: in the lake of counted {files}")


def main(smoke: bool = False) -> bool:
    size = SMOKE if smoke else FULL
    rates = market(max(size.counts))
    counts = ", ".join(str(count) for count in size.counts)
    report = Report(
        f"symbols: objects the lake receives, {counts} symbols ({size.seconds:g} s each, {size.flush_seconds:g} s"
        f" flushes; the symbol of rank r trades {BUSIEST_RATE:g} / r times a second)"
    )
    port = free_port()
    arguments = ["--symbols", ",".join(rates), *(f"--symbol-rate={symbol}:{rate!r}" for symbol, rate in rates.items())]
    sandbox = start_sandbox(port, arguments)
    try:
        with tempfile.TemporaryDirectory() as work:
            warm_up(Path(work))
            runs = [measure(port, rates, count, size, Path(work)) for count in size.counts]
    finally:
        sandbox.terminate()
        sandbox.wait(30)
    for run in runs:
        report_run(report, run, size)
    report_checks(report, runs)
    return report.passed(enforce_targets=not smoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 s per count, targets not enforced")
    sys.exit(0 if main(parser.parse_args().smoke) else 1)
