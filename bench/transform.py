"""Transform: ``dbt build`` of the candle marts on DuckDB, against a hand GROUP BY, as history grows.

raw.trades is filled the way the loader fills it, without a lake in between: the warehouse is
created by its own migrations (``DuckDBWarehouse``), and each load commit inserts the lake's contract
table (``include.lake.trades.to_table``: exact DECIMAL(38, 8) built from integer units, no float)
with the loader's statement, so that its rows share its ``loaded_at``. Four symbols of different
liquidity (the thin ones have empty minutes every hour) trade on one timeline: 10,000,000 trades
span 7 days, so every interval up to 1d has buckets.

1. Full build: a full build of all candle marts (the six models and their tests, ``--full-refresh``,
   stg_trades built) on a warehouse holding 10,000,000 trades, against a hand-written SQL script
   (``bench/hand_candles.sql``) that builds the same six tables in one DuckDB connection from the same
   input (``staging.stg_trades``): the same columns, zero-fill, completeness by trade id and exact
   decimals, without dbt. Target (issue 19): at
   most 2.5x. One hand GROUP BY of the 1m candles alone (issue 11's old baseline) and the whole
   project's first build (stg_trades' copy of every trade and every test) are printed too.
2. Incremental growth: 10,000 new trades loaded into warehouses that hold 100,000 and 10,000,000
   trades of the same market (a longer history), then the per-batch ``transform`` (what the warehouse
   DAG builds after a micro-batch: without the tests tagged nightly, which read every trade), in this
   process, timed (median of a few). Target: the large history costs at most 1.5 times the small one.
3. Freshness: one micro-batch loaded into the large warehouse, then ``python -m include.cli
   transform --per-batch`` in a fresh process, as a user runs it (partial parsing warm, Python's
   bytecode cache kept in a temporary folder), timed by its wall clock. Target: at most 5 s.

Checks: the full build's six marts equal the hand script's tables, row for row (all but the load and
build times); the non-empty 1m candles equal the hand GROUP BY's; every trade is counted once; and
after all the incremental builds every mart equals a full refresh's.
``--smoke`` runs it all at a tiny size (the targets are reported, not enforced; the checks are).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa

from bench.common import REPO_ROOT
from bench.report import Report, Target
from include.candles import INTERVAL_NAMES, INTERVALS, MINUTE
from include.config import Settings, load_settings
from include.lake.trades import TradeColumns, to_table
from include.timeutil import HOUR_US
from include.transform import PER_BATCH_EXCLUDE, dbt_args, transform
from include.warehouse.duckdb_backend import DuckDBWarehouse

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
TARGET_BUILD_RATIO = 2.5  # the candle marts with their tests against the hand script of the same six tables
HAND_SCRIPT = REPO_ROOT / "bench" / "hand_candles.sql"
# The marts' columns that the hand script builds too (it has no load or build time to record).
HAND_COLUMNS = (
    "symbol, open_time, close_time, open, high, low, close, volume, quote_volume, taker_buy_volume, "
    "taker_buy_quote_volume, trade_count, first_trade_id, last_trade_id, last_trade_time, is_closed, is_complete"
)
TARGET_GROWTH_RATIO = 1.5
TARGET_FRESHNESS_SECONDS = 5.0
COMMIT_TRADES = 1_000_000  # trades per load commit while the history is loaded
CLI_TIMEOUT_SECONDS = 900
# Python's bytecode for the fresh CLI processes, kept between runs (this machine's environment may
# forbid writing it beside the sources, which would make every start compile dbt anew). It lives in
# the virtualenv, the environment it was compiled for, not in /tmp: `make clean` removes both.
PYCACHE = Path(sys.prefix) / "bench-pycache"
QUIET = {"DBT_QUIET": "true"}  # dbt in this process prints only errors; its log file has the rest


@dataclass(frozen=True)
class Size:
    large: int  # trades in the large warehouse (the full build is timed on it) ...
    days: int  # ... over this many days, which sets the market's rate for both warehouses
    small: int  # trades in the small one
    new: int  # growth: trades loaded before each timed incremental build
    micro_batch: int  # freshness: trades of the micro-batch before each timed ``transform``
    rounds: int
    warm_up: bool  # untimed first runs: dbt's full parse of the project, a CLI run compiling the bytecode


FULL = Size(large=10_000_000, days=7, small=100_000, new=10_000, micro_batch=1_000, rounds=3, warm_up=True)
SMOKE = Size(large=20_000, days=1, small=2_000, new=500, micro_batch=100, rounds=1, warm_up=False)


@dataclass(frozen=True)
class Market:
    symbol: str
    share: float  # of all trades
    active_minutes: int  # of each hour with trades; the rest of the hour's minutes are empty
    base_units: int  # price level in 1e-8
    first_id: int


MARKETS = (
    Market("BTCUSDT", 0.50, 60, 9_000_000_000_000, 4_200_000_001),
    Market("ETHUSDT", 0.30, 60, 300_000_000_000, 1_900_000_001),
    Market("SOLUSDT", 0.15, 57, 20_000_000_000, 800_000_001),
    Market("DOGEUSDT", 0.05, 41, 15_000_000, 500_000_001),
)

# The loader's insert (include/warehouse/duckdb_backend.py): every row of a commit gets its loaded_at.
LOAD_INCOMING = "insert into raw.trades by name select *, now() as loaded_at from incoming"
# The stream's heartbeat, as every load refreshes it: each symbol seen up to its last trade.
REFRESH_HEARTBEATS = """
insert or replace into raw.stream_status
select exchange, symbol, max(trade_time), max(trade_id), max(trade_time), 0.5, 'bench', now()
from incoming
group by exchange, symbol
"""
CANDLE_VALUES = (
    "symbol, open_time, open, high, low, close, volume, quote_volume, taker_buy_volume, "
    "taker_buy_quote_volume, trade_count"
)
# One hand-written GROUP BY for the 1m candles: the baseline the full build is compared with.
HAND_CANDLES = """
create or replace table bench.hand_candles_1m as
select
    symbol,
    make_timestamptz(epoch_us(trade_time) // 60000000 * 60000000) as open_time,
    arg_min(price, trade_id) as open,
    max(price) as high,
    min(price) as low,
    arg_max(price, trade_id) as close,
    cast(sum(quantity) as decimal(38, 8)) as volume,
    cast(sum(quote_quantity) as decimal(38, 16)) as quote_volume,
    cast(sum(if(is_buyer_maker, 0, quantity)) as decimal(38, 8)) as taker_buy_volume,
    cast(sum(if(is_buyer_maker, 0, quote_quantity)) as decimal(38, 16)) as taker_buy_quote_volume,
    count(*) as trade_count
from raw.trades
group by all
"""


class SyntheticMarket:
    """The trades of ``MARKETS`` on one timeline, loaded into a DuckDB warehouse commit by commit."""

    def __init__(self, path: Path, trades_per_hour: float) -> None:
        self.path = path
        self.trades_per_hour = trades_per_hour
        self.loaded = 0  # trades of all symbols loaded so far

    def load(self, count: int, commit_trades: int = COMMIT_TRADES) -> None:
        """The next ``count`` trades, in load commits of ``commit_trades`` (each its own loaded_at)."""
        with DuckDBWarehouse(self.path) as warehouse:
            warehouse.execute("create schema if not exists bench")
            end = self.loaded + count
            for first in range(self.loaded, end, commit_trades):
                self._commit(warehouse, first, min(end, first + commit_trades))
            self.loaded = end

    def _commit(self, warehouse: DuckDBWarehouse, first: int, last: int) -> None:
        """One load commit, as the loader makes it: the lake's contract table, ``now()`` as loaded_at."""
        batches = [self.trades(market, round(first * market.share), round(last * market.share)) for market in MARKETS]
        written_us = max(int(batch.trade_time_us.max(initial=START_US)) for batch in batches) + 1_000_000
        incoming = pa.concat_tables([to_table(batch, "stream", written_us) for batch in batches])
        warehouse.connection.register("incoming", incoming)
        try:
            warehouse.execute("begin")
            warehouse.execute(LOAD_INCOMING)
            warehouse.execute(REFRESH_HEARTBEATS)
            warehouse.execute("commit")
        finally:
            warehouse.connection.unregister("incoming")

    def trades(self, market: Market, first_k: int, last_k: int) -> TradeColumns:
        """Trades k (from 0) of a symbol: ``per_hour`` spread over each hour's active minutes, a price
        level drifting around the base with noise, in integer 1e-8 units (exact decimals, no float)."""
        k = np.arange(first_k, last_k, dtype=np.int64)
        per_hour = max(1, round(self.trades_per_hour * market.share))
        active_us = market.active_minutes * 60_000_000
        base = market.base_units
        return TradeColumns(
            market.symbol,
            market.first_id + k,
            base + (k // 997 * 7919) % (base // 40) + (k * 104_729) % (base // 4000),
            1000 + (k * 15_485_863) % 99_999_000,
            START_US + k // per_hour * HOUR_US + k % per_hour * active_us // per_hour,
            (k * 2_654_435_761) % 5 < 2,
        )

    def query(self, sql: str) -> list[tuple]:
        with DuckDBWarehouse(self.path) as warehouse:
            return warehouse.execute(sql)


@dataclass
class Build:
    """One dbt run's timings: wall clock, and dbt's own sums per kind of node."""

    seconds: float = 0.0
    models: float = 0.0
    tests: float = 0.0
    dbt_elapsed: float = 0.0

    @classmethod
    def measured(cls, seconds: float, result: dict) -> Build:
        """From ``TransformResult.as_dict()``, as ``transform`` returns it and the CLI prints it."""
        return cls(seconds, result["model_seconds"], result["test_seconds"], result["elapsed_seconds"])


@dataclass
class Warehouse:
    """A benchmark warehouse: its market, its settings for ``transform`` and its own dbt target folder."""

    market: SyntheticMarket
    settings: Settings
    target_dir: Path

    @classmethod
    def create(cls, work: Path, name: str, trades_per_hour: float) -> Warehouse:
        path = work / f"{name}.duckdb"
        settings = load_settings({"DUCKDB_PATH": str(path), "WAREHOUSE": "duckdb"})
        return cls(SyntheticMarket(path, trades_per_hour), settings, work / f"dbt-{name}")

    def parse(self) -> None:
        """dbt's first, full parse of the project, so that the builds timed after it parse partially."""
        from dbt.cli.main import dbtRunner

        with mock.patch.dict(os.environ, {"DUCKDB_PATH": str(self.settings.duckdb_path), **QUIET}):
            outcome = dbtRunner().invoke(dbt_args(self.settings, "parse", target_dir=self.target_dir))
        if not outcome.success:
            raise RuntimeError(f"dbt parse failed: {outcome.exception}")

    def build(self, full_refresh: bool = False, select: tuple[str, ...] = (), per_batch: bool = False) -> Build:
        """``transform`` in this process, timed; ``per_batch`` as the warehouse DAG after a micro-batch."""
        exclude = PER_BATCH_EXCLUDE if per_batch else ()
        began = time.perf_counter()
        with mock.patch.dict(os.environ, QUIET):
            result = transform(self.settings, full_refresh, select, self.target_dir, exclude)
        return Build.measured(time.perf_counter() - began, result.as_dict())

    def build_from_cli(self, models_only: bool = False) -> Build:
        """``python -m include.cli transform`` in a fresh process, as a user runs it, timed by its wall clock.

        ``models_only`` selects the models and none of the tests: what the transform costs without them.
        """
        environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
        environment |= {
            "WAREHOUSE": "duckdb",
            "DUCKDB_PATH": str(self.settings.duckdb_path),
            "DBT_TARGET_PATH": str(self.target_dir),  # this warehouse's artifacts, parsed already
            "DBT_LOG_PATH": str(self.target_dir / "logs"),
            "PYTHONPYCACHEPREFIX": str(PYCACHE),  # compiled once, as an installed package is
        }
        command = [sys.executable, "-m", "include.cli", "transform", "--per-batch"]
        if models_only:
            command += ["--select", "resource_type:model"]
            environment["DBT_INDIRECT_SELECTION"] = "empty"  # not even a selected model's own tests
        began = time.perf_counter()
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS
        )
        seconds = time.perf_counter() - began
        if done.returncode:
            raise RuntimeError(f"transform failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return Build.measured(seconds, json.loads(done.stdout.strip().splitlines()[-1]))


def median_build(rounds: int, step: Callable[[], Build]) -> Build:
    """The build of median wall time of ``rounds`` runs of ``step``."""
    builds = sorted((step() for _ in range(rounds)), key=lambda build: build.seconds)
    return builds[len(builds) // 2]


def hand_group_by(warehouse: Warehouse, rounds: int) -> float:
    """Median seconds of the hand-written 1m GROUP BY over raw.trades."""
    timings = []
    with DuckDBWarehouse(warehouse.settings.duckdb_path) as duckdb:
        for _ in range(rounds):
            began = time.perf_counter()
            duckdb.execute(HAND_CANDLES)
            timings.append(time.perf_counter() - began)
    return statistics.median(timings)


def hand_script() -> str:
    """``bench/hand_candles.sql`` with its larger intervals filled in: one text of statements."""
    body, each = HAND_SCRIPT.read_text().split("-- {each_interval}", 1)
    larger = [interval for interval in INTERVALS if interval != MINUTE]
    widths = ", ".join(f"('{interval.name}', {interval.length_us})" for interval in larger)
    per_interval = each.split("\n", 1)[1]
    return body.replace("{intervals}", widths) + "".join(per_interval.replace("{name}", i.name) for i in larger)


def hand_six_marts(warehouse: Warehouse, rounds: int) -> float:
    """Median seconds of the hand script building the six candle tables in one connection."""
    script, timings = hand_script(), []
    with DuckDBWarehouse(warehouse.settings.duckdb_path) as duckdb:
        for _ in range(rounds):
            began = time.perf_counter()
            duckdb.connection.execute(script)
            timings.append(time.perf_counter() - began)
    return statistics.median(timings)


def marts_match_hand_script(warehouse: Warehouse) -> tuple[bool, str]:
    """Each mart and the hand script's table hold the same rows, value for value and type for type."""
    differing, rows = [], 0
    for interval in INTERVAL_NAMES:
        mart = f"select {HAND_COLUMNS} from marts.candles_{interval}"
        hand = f"select {HAND_COLUMNS} from hand.candles_{interval}"
        (only_mart, only_hand, count), *_ = warehouse.market.query(
            f"select (select count(*) from ({mart} except all {hand})),"
            f" (select count(*) from ({hand} except all {mart})), (select count(*) from hand.candles_{interval})"
        )
        rows += count
        if only_mart or only_hand or not count:
            differing.append(f"{interval}: {only_mart} only in the mart, {only_hand} only in the hand script")
    return not differing, "; ".join(differing) or f"{rows:,} rows in six tables"


def candles_match_hand(warehouse: Warehouse) -> tuple[bool, str]:
    """The mart's non-empty 1m candles and the hand GROUP BY's rows are the same, value for value."""
    mart = f"select {CANDLE_VALUES} from marts.candles_1m where trade_count > 0"
    hand = f"select {CANDLE_VALUES} from bench.hand_candles_1m"
    (only_mart, only_hand, rows, typed), *_ = warehouse.market.query(
        f"select (select count(*) from ({mart} except all {hand})), (select count(*) from ({hand} except all {mart})),"
        " (select count(*) from bench.hand_candles_1m),"
        " (select bool_and(typeof(open) = 'DECIMAL(38,8)') from marts.candles_1m)"
    )
    ok = only_mart == only_hand == 0 and rows > 0 and typed
    return ok, f"{rows:,} minutes; {only_mart} only in the mart, {only_hand} only in the GROUP BY"


def trades_counted_once(warehouse: Warehouse) -> tuple[bool, str]:
    (counted, loaded), *_ = warehouse.market.query(
        "select (select sum(trade_count) from marts.candles_1m), (select count(*) from raw.trades)"
    )
    return counted == loaded, f"{counted:,} counted, {loaded:,} loaded"


def snapshot_marts(warehouse: Warehouse) -> None:
    with DuckDBWarehouse(warehouse.settings.duckdb_path) as duckdb:
        for interval in INTERVAL_NAMES:
            duckdb.execute(
                f"create or replace table bench.incremental_{interval} as select * from marts.candles_{interval}"
            )


def marts_equal_snapshot(warehouse: Warehouse) -> tuple[bool, str]:
    """Every mart equals its snapshot taken before the full refresh, row for row and column for column
    (but built_at: when each build ran)."""
    differing = []
    for interval in INTERVAL_NAMES:
        mart = f"(select * exclude (built_at) from marts.candles_{interval})"
        kept = f"(select * exclude (built_at) from bench.incremental_{interval})"
        (only_mart, only_kept, rows), *_ = warehouse.market.query(
            f"select (select count(*) from (from {mart} except all from {kept})),"
            f" (select count(*) from (from {kept} except all from {mart})), (select count(*) from {mart})"
        )
        if only_mart or only_kept or not rows:
            differing.append(f"{interval}: {only_kept} rows only incremental, {only_mart} only refreshed")
    return not differing, "; ".join(differing) or "all six marts"


def load_then_build(warehouse: Warehouse, trades: int) -> Build:
    warehouse.market.load(trades)
    return warehouse.build(per_batch=True)


def load_then_cli(warehouse: Warehouse, trades: int, models_only: bool = False) -> Build:
    warehouse.market.load(trades)
    return warehouse.build_from_cli(models_only)


@dataclass
class Measured:
    hand: float = 0.0  # the hand GROUP BY of the 1m candles
    hand_script: float = 0.0  # the hand script of the six marts
    full: Build = field(default_factory=Build)
    marts: Build = field(default_factory=Build)  # the candle marts alone, rebuilt from scratch
    small: Build = field(default_factory=Build)  # incremental builds, small and large history
    large: Build = field(default_factory=Build)
    fresh: Build = field(default_factory=Build)  # the CLI after a micro-batch: the transform, then its models only
    fresh_models_only: Build = field(default_factory=Build)
    refresh: Build = field(default_factory=Build)
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)


def full_build(large: Warehouse, size: Size, measured: Measured) -> None:
    began = time.perf_counter()
    large.market.load(size.large)
    print(f"raw.trades: {size.large:,} trades generated and loaded in {time.perf_counter() - began:.1f} s", flush=True)
    if size.warm_up:
        large.parse()
    measured.full = large.build()  # stg_trades too: the marts' input, and the hand script's
    measured.hand = hand_group_by(large, size.rounds)
    measured.hand_script = hand_six_marts(large, size.rounds)
    measured.marts = large.build(full_refresh=True, select=("path:models/marts",))
    measured.checks["1m candles equal the hand GROUP BY"] = candles_match_hand(large)
    measured.checks["the six marts equal the hand script's"] = marts_match_hand_script(large)


def growth(small: Warehouse, large: Warehouse, size: Size, measured: Measured) -> None:
    small.market.load(size.small)
    if size.warm_up:
        small.parse()
    small.build()
    measured.small = median_build(size.rounds, lambda: load_then_build(small, size.new))
    measured.large = median_build(size.rounds, lambda: load_then_build(large, size.new))


def freshness(large: Warehouse, size: Size, measured: Measured) -> None:
    if size.warm_up:
        load_then_cli(large, size.micro_batch)
    measured.fresh = median_build(size.rounds, lambda: load_then_cli(large, size.micro_batch))
    measured.fresh_models_only = median_build(
        size.rounds, lambda: load_then_cli(large, size.micro_batch, models_only=True)
    )


def refresh(large: Warehouse, measured: Measured) -> None:
    """After every incremental build: each trade counted once, and the marts equal a full refresh's."""
    measured.checks["every trade counted once in 1m candles"] = trades_counted_once(large)
    snapshot_marts(large)
    measured.refresh = large.build(full_refresh=True)
    measured.checks["incremental marts equal a full refresh"] = marts_equal_snapshot(large)


def measure(work: Path, size: Size) -> Measured:
    trades_per_hour = size.large / (size.days * 24)  # the same market in both warehouses
    large, small = Warehouse.create(work, "large", trades_per_hour), Warehouse.create(work, "small", trades_per_hour)
    measured = Measured()
    full_build(large, size, measured)
    growth(small, large, size, measured)
    freshness(large, size, measured)
    refresh(large, measured)
    return measured


def report_full_build(report: Report, measured: Measured, size: Size) -> None:
    full, marts = measured.full, measured.marts
    report.figure("hand GROUP BY, 1m candles", measured.hand, "s", digits=2, note=f"median of {size.rounds}")
    report.figure("hand SQL, the six marts", measured.hand_script, "s", digits=2, note=f"median of {size.rounds}")
    report.figure("full build of the candle marts", marts.seconds, "s", digits=2, note="6 marts and their tests")
    ratio = marts.seconds / measured.hand_script
    report.figure("candle marts / hand SQL", ratio, digits=2, target=Target("<=", TARGET_BUILD_RATIO))
    report.figure("candle marts / hand GROUP BY", marts.seconds / measured.hand, digits=2, note="the 1m GROUP BY")
    report.figure("candle marts, models", marts.models, "s", digits=2, note="dbt's own timings, tests excluded")
    report.figure("candle marts, tests", marts.tests, "s", digits=2, note="dbt's own timings")
    report.figure("candle marts' models / hand GROUP BY", marts.models / measured.hand, digits=2)
    report.figure("full build (dbt build)", full.seconds, "s", digits=2, note="stg_trades, the marts, every test")
    report.figure("full build, models", full.models, "s", digits=2, note="dbt's own timings")
    report.figure("full build, tests", full.tests, "s", digits=2)
    report.figure("full build / hand GROUP BY", full.seconds / measured.hand, digits=2)
    report.figure("full refresh (dbt build)", measured.refresh.seconds, "s", digits=2, note="after the others")


def report_growth(report: Report, measured: Measured, size: Size) -> None:
    small, large = measured.small, measured.large
    new = f"{size.new:,} new trades, median of {size.rounds}"
    report.figure("incremental, small history", small.seconds, "s", digits=2, note=f"{size.small:,} + {new}")
    report.figure("incremental, large history", large.seconds, "s", digits=2, note=f"{size.large:,} + {new}")
    ratio = large.seconds / small.seconds
    report.figure("incremental, large / small", ratio, digits=2, target=Target("<=", TARGET_GROWTH_RATIO))
    models = large.models / small.models
    report.figure("incremental models, large / small", models, digits=2, note="dbt's timings of the models alone")


def report_freshness(report: Report, measured: Measured, size: Size) -> None:
    fresh, bare = measured.fresh, measured.fresh_models_only
    batch = f"a {size.micro_batch:,}-trade micro-batch, median of {size.rounds}"
    target = Target("<=", TARGET_FRESHNESS_SECONDS)
    report.figure("freshness, CLI transform wall time", fresh.seconds, "s", digits=2, target=target, note=batch)
    report.figure("freshness, process start and exit", fresh.seconds - fresh.dbt_elapsed, "s", digits=2)
    report.figure("freshness, models", fresh.models, "s", digits=2, note="dbt's own timings")
    report.figure("freshness, tests", fresh.tests, "s", digits=2)
    report.figure("freshness, models only (no tests)", bare.seconds, "s", digits=2, note="CLI --select the models")


def main(smoke: bool = False) -> bool:
    size = SMOKE if smoke else FULL
    report = Report(
        f"transform: dbt build on DuckDB ({size.large:,} trades over {size.days} days; histories of"
        f" {size.small:,} and {size.large:,} trades)"
    )
    with tempfile.TemporaryDirectory() as work_dir:
        measured = measure(Path(work_dir), size)
    report_full_build(report, measured, size)
    report_growth(report, measured, size)
    report_freshness(report, measured, size)
    for label, (ok, detail) in measured.checks.items():
        report.check(label, ok, detail)
    return report.passed(enforce_targets=not smoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny size, targets not enforced")
    sys.exit(0 if main(parser.parse_args().smoke) else 1)
