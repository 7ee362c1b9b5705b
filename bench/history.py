"""History: what a user waits for after one more micro-batch, with a day and with a month behind it.

Two markets, each measured the same way: a few busy symbols (2 at one trade a second each), then
many quiet ones (100 at one trade in 100 s each, labels prefixed ``quiet,``), where the marts grow
most per trade: a row per symbol-minute, traded or not. For each, two DuckDB warehouses hold the same
market, one with 1 day of history and one with 30 days, as a month of loads leaves them: raw.trades
with each load's ``loaded_at`` (a load a minute, 30 s after it), and raw.load_ledger with one row
per lake file, a file per symbol per 5 s flush (720 an hour) in the hour the history ends in, and
one per symbol-hour before it (compacted: the load forgets the rows of the files a compacted file
replaced). The rows are made directly as the lake's contract table (``include.lake.trades.to_table``:
exact DECIMAL(38, 8) from integer units, no float) and inserted with the ledger in the loader's
shape; the lake itself holds only what comes next. Each warehouse gets dbt's full build once (every
model and test), then, a few times: one new micro-batch (one stream file per symbol with trades,
5 s of trades) is written to its lake and announced by a write marker, ``load_lake`` loads it (the
real load path, include/warehouse/load.py), and the per-batch ``transform`` builds on it
(include/transform.py, in this process, without the tests tagged nightly, as the warehouse DAG
after a micro-batch). Both are timed (median of the rounds), and dbt's own time of candles_1m and
of each of its tests (the mart with the most rows), against that of every other node; the 30-day
figures are printed against the 1-day ones. No target: issue 22 asks for the figures and, where the
month costs more, why.

Checks: every trade loaded exactly once, every lake file in the ledger exactly once, and every
trade counted once in the 1m candles.
``--smoke`` runs it at a tiny size (two days instead of thirty, quieter markets, 5 quiet symbols).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa

from bench.report import Report
from bench.transform import QUIET, Build
from include.config import Settings, load_settings
from include.lake.keys import hour_prefix
from include.lake.markers import MarkerWriter
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, to_table, trade_objects
from include.timeutil import HOUR_US, MICROS_PER_SECOND, MINUTE_US, now_us
from include.transform import PER_BATCH_EXCLUDE, dbt_args, transform
from include.warehouse.discover import discover
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake

DAY_US = 24 * HOUR_US
FLUSH_US = HOUR_US // 720  # the stream's 5 s flush: a file per symbol and flush, 720 an hour
LOAD_EVERY_US = MINUTE_US  # a load a minute ...
LOAD_DELAY_US = 30 * MICROS_PER_SECOND  # ... 30 s after the minute it loads
FILE_OVERHEAD_BYTES, BYTES_PER_TRADE = 3_000, 40  # a small stream file's size, for the ledger's size column
HOUR_END_GAP_US = 5 * MINUTE_US  # the history ends this long before an hour ends
WRITER = "stream-bench"  # the stream writer of the history's last hour and of the micro-batches
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
FIRST_IDS = (4_200_000_001, 1_900_000_001, 800_000_001, 600_000_001)
BASE_UNITS = (9_000_000_000_000, 300_000_000_000, 20_000_000_000, 60_000_000_000)
CANDLES_1M_NODE = re.compile(r"(^|_)candles_1m(_|$)")  # the model, or a test of it (its name holds the model's)


@dataclass(frozen=True)
class Case:
    """One market measured with both histories: ``symbols`` symbols at ``rate`` trades per second each.
    ``prefix`` starts its figures' labels (none for the first case, whose labels predate the others)."""

    prefix: str
    symbols: int
    rate: float

    @property
    def described(self) -> str:
        return f"{self.symbols} symbols at {self.rate:g} trades/s each"


@dataclass(frozen=True)
class Size:
    short_days: int
    long_days: int
    # A few busy symbols, then many quiet ones: the marts' rows grow with symbols x days whatever the
    # trades, and the quiet market is where a per-batch build's tests would read the most rows per trade.
    cases: tuple[Case, ...]
    rounds: int
    warm_up: bool  # dbt's full parse of the project before the first build, an untimed first round


FULL = Size(short_days=1, long_days=30, cases=(Case("", 2, 1.0), Case("quiet, ", 100, 0.01)), rounds=5, warm_up=True)
SMOKE = Size(short_days=1, long_days=2, cases=(Case("", 2, 0.2), Case("quiet, ", 5, 0.01)), rounds=1, warm_up=False)


def symbol_name(index: int) -> str:
    """The market's ``index``-th symbol: a few real names, then made-up quiet ones."""
    return SYMBOLS[index] if index < len(SYMBOLS) else f"Q{index:03d}USDT"


@dataclass(frozen=True)
class Market:
    """The trades of ``symbols`` from ``start_us`` on, one every ``1 / rate`` s with a jitter."""

    symbols: int
    rate: float
    start_us: int

    @property
    def spacing_us(self) -> int:
        return int(MICROS_PER_SECOND / self.rate)

    def trades(self, index: int, first: int, count: int) -> TradeColumns:
        """Symbol ``index``'s trades ``first .. first + count - 1`` (0 is its first at ``start_us``)."""
        k = np.arange(first, first + count, dtype=np.int64)
        base = BASE_UNITS[index % len(BASE_UNITS)]
        first_id = FIRST_IDS[index] if index < len(FIRST_IDS) else 100_000_001 + index * 1_000_000
        jitter = (k * 7919) % (self.spacing_us // 2)  # below half the spacing: times stay in id order
        return TradeColumns(
            symbol_name(index),
            first_id + k,
            base + (k // 997 * 7919) % (base // 40) + (k * 104_729) % (base // 4000),
            1000 + (k * 15_485_863) % 99_999_000,
            self.start_us + k * self.spacing_us + jitter,
            (k * 2_654_435_761) % 5 < 2,
        )

    def between(self, index: int, start_us: int, end_us: int) -> TradeColumns:
        """Symbol ``index``'s trades whose slot starts in [start_us, end_us)."""
        first = -(-(start_us - self.start_us) // self.spacing_us)
        last = -(-(end_us - self.start_us) // self.spacing_us)
        return self.trades(index, first, last - first)


def flush_files(columns: TradeColumns) -> tuple[np.ndarray, np.ndarray]:
    """Where each 5 s flush's file starts in ``columns`` (indexes), and each file's flush end (µs)."""
    flush = columns.trade_time_us // FLUSH_US
    starts = np.concatenate([[0], np.flatnonzero(np.diff(flush)) + 1])
    return starts, (flush[starts] + 1) * FLUSH_US


def loaded_at(flush_end_us: np.ndarray) -> np.ndarray:
    """When the load that took a file written at ``flush_end_us`` committed."""
    return -(-flush_end_us // LOAD_EVERY_US) * LOAD_EVERY_US + LOAD_DELAY_US


def history_tables(columns: TradeColumns, compacted_before_us: int) -> tuple[pa.Table, pa.Table]:
    """raw.trades rows and raw.load_ledger rows of one symbol's trades, as their loads left them: a
    ledger row per 5 s flush file, but one per hour for the hours before ``compacted_before_us``
    (compacted once repaired; the load forgets the rows of the files a compacted file replaced)."""
    starts, flush_end = flush_files(columns)
    counts = np.diff(np.append(starts, len(columns)))
    loaded = loaded_at(flush_end)
    trades = to_table(columns, "stream", 0)
    per_row = pa.array(np.repeat(flush_end, counts)).cast(pa.timestamp("us", tz="UTC"))
    trades = trades.set_column(trades.schema.get_field_index("ingested_at"), "ingested_at", per_row)
    trades = trades.append_column("loaded_at", pa.array(np.repeat(loaded, counts)).cast(pa.timestamp("us", tz="UTC")))
    first_ids, last_ids = columns.trade_id[starts], columns.trade_id[starts + counts - 1]
    hours = columns.trade_time_us[starts] // HOUR_US * HOUR_US
    sizes = FILE_OVERHEAD_BYTES + BYTES_PER_TRADE * counts
    files = pa.table({"hour": hours, "first": first_ids, "last": last_ids, "size": sizes, "rows": counts, "at": loaded})
    return trades, ledger_rows(columns.symbol, files, compacted_before_us)


def ledger_rows(symbol: str, files: pa.Table, compacted_before_us: int) -> pa.Table:
    """The ledger rows of a symbol's flush files (hour, first, last, size, rows, at): one per file of
    the hours from ``compacted_before_us`` on, one per compacted hour before it."""
    hours = files["hour"].to_numpy()
    old = files.filter(pa.array(hours < compacted_before_us))
    compacted = old.group_by("hour").aggregate(
        [("first", "min"), ("last", "max"), ("size", "sum"), ("rows", "sum"), ("at", "max")]
    )
    compacted = compacted.rename_columns(["hour", "first", "last", "size", "rows", "at"])
    recent = files.filter(pa.array(hours >= compacted_before_us))
    keys, sizes, etags, counts, loaded = [], [], [], [], []
    for source, table in (("compact", compacted), ("stream", recent)):
        for hour, first, last, size, rows, at in zip(
            *(table[name].to_pylist() for name in files.column_names), strict=True
        ):
            keys.append(f"{hour_prefix(symbol, hour)}{source}-{first}-{last}.parquet")
            sizes.append(size)
            etags.append(f"{size}-{at * 1000}")
            counts.append(rows)
            loaded.append(at)
    return pa.table(
        {
            "file_key": keys,
            "size": pa.array(sizes, pa.int64()),
            "etag": etags,
            "row_count": pa.array(counts, pa.int64()),
            "loaded_at": pa.array(loaded, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def fill_history(warehouse: DuckDBWarehouse, market: Market, end_us: int) -> tuple[int, int]:
    """Insert every trade and ledger row before ``end_us``, a day at a time in load order; (trades, files)."""
    trades = files = 0
    for day_start in range(market.start_us, end_us, DAY_US):
        day_end = min(day_start + DAY_US, end_us)
        tables = [
            history_tables(market.between(i, day_start, day_end), end_us // HOUR_US * HOUR_US)
            for i in range(market.symbols)
        ]
        day = pa.concat_tables([t for t, _ in tables]).sort_by([("loaded_at", "ascending"), ("symbol", "ascending")])
        ledger = pa.concat_tables([ledger for _, ledger in tables]).sort_by("loaded_at")
        warehouse.connection.register("incoming", day)
        warehouse.connection.register("incoming_ledger", ledger)
        warehouse.execute("insert into raw.trades by name select * from incoming")
        warehouse.execute("insert into raw.load_ledger by name select * from incoming_ledger")
        warehouse.connection.unregister("incoming")
        warehouse.connection.unregister("incoming_ledger")
        trades, files = trades + len(day), files + len(ledger)
    return trades, files


def hour_files(market: Market, end_us: int) -> list[tuple[str, bytes]]:
    """The lake files of the hour the history ends in, as the stream wrote them: the hour partitions
    every load after the next micro-batch lists. The same files as the ledger's rows of that hour
    (the last day's trades, cut by flush, as ``fill_history`` cut them)."""
    hour_start = end_us // HOUR_US * HOUR_US
    objects = []
    for index in range(market.symbols):
        columns = market.between(index, max(end_us - DAY_US, market.start_us), end_us)
        starts, flush_end = flush_files(columns)
        ends = np.append(starts[1:], len(columns))
        for start, end, written in zip(starts, ends, flush_end, strict=True):
            if written - FLUSH_US >= hour_start:
                part = columns.take(np.arange(start, end))
                objects += trade_objects(part, "stream", int(written))
    return objects


@dataclass
class Round:
    load: float
    build: Build
    files_listed: int  # by the load's discovery: every file of the partitions the writer's marker names
    ledger_lookup: float  # the load's semi-join of those files against raw.load_ledger
    nodes: dict[str, float] = field(default_factory=dict)  # dbt's own time of each model and test


@dataclass
class HistoryWarehouse:
    """One warehouse with ``days`` of history, its lake for the new micro-batches, its dbt target folder."""

    days: int
    market: Market
    end_us: int  # the history ends here; micro-batch n covers the n-th flush after it
    work: Path
    trades: int = 0
    files: int = 0  # in the ledger before the micro-batches
    batches: int = 0
    new_files: int = 0  # written by the micro-batches
    full_build: float = 0.0
    rounds: list[Round] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return load_settings({"DUCKDB_PATH": str(self.work / "warehouse.duckdb"), "WAREHOUSE": "duckdb"})

    @property
    def lake(self) -> LocalStore:
        return LocalStore(self.work / "lake")

    def build(self, per_batch: bool) -> tuple[Build, dict[str, float]]:
        """``transform`` in this process, timed, and each node's time; ``per_batch`` as the warehouse
        DAG after a micro-batch."""
        began = time.perf_counter()
        with mock.patch.dict(os.environ, QUIET):
            result = transform(
                self.settings, target_dir=self.work / "dbt", exclude=PER_BATCH_EXCLUDE if per_batch else ()
            )
        return Build.measured(time.perf_counter() - began, result.as_dict()), result.node_seconds

    def prepare(self, warm_up: bool) -> None:
        """The history, a first load of the empty lake (the load cursor), dbt's full build."""
        began = time.perf_counter()
        keys = []
        for key, data in hour_files(self.market, self.end_us):
            path = self.lake.root / key  # not the lake's fsync per object: only to build the history fast
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            keys.append(key)
        MarkerWriter(self.lake, WRITER).mark(keys)
        with DuckDBWarehouse(self.settings.duckdb_path) as warehouse:
            self.trades, self.files = fill_history(warehouse, self.market, self.end_us)
            first = load_lake(self.lake, warehouse)  # lists the lake: the hour's files, every one loaded
        if first.files_loaded:
            raise RuntimeError(f"the hour's {first.files_loaded} files in the lake were not in the ledger")
        print(
            f"history of {days(self.days)} made ({self.trades:,} trades and {self.files:,} ledger rows"
            f" in {time.perf_counter() - began:.1f} s)",
            flush=True,
        )
        if warm_up:
            from dbt.cli.main import dbtRunner

            environment = {"DUCKDB_PATH": str(self.settings.duckdb_path), **QUIET}
            with mock.patch.dict(os.environ, environment):
                dbtRunner().invoke(dbt_args(self.settings, "parse", target_dir=self.work / "dbt"))
        self.full_build = self.build(per_batch=False)[0].seconds

    def micro_batch(self) -> None:
        """The next 5 s of every symbol's trades, written to the lake as a stream writes them, announced."""
        start = self.end_us + self.batches * FLUSH_US
        keys = []
        for index in range(self.market.symbols):
            for key, data in trade_objects(self.market.between(index, start, start + FLUSH_US), "stream", now_us()):
                self.lake.put(key, data)
                keys.append(key)
        MarkerWriter(self.lake, WRITER).mark(keys)
        self.batches += 1
        self.new_files += len(keys)

    def round(self, timed: bool = True) -> None:
        """One more micro-batch, loaded and built on; ``timed=False`` for a warm-up round."""
        self.micro_batch()
        with DuckDBWarehouse(self.settings.duckdb_path) as warehouse:
            # The load's own look-up of the listed files in the ledger, alone (it changes nothing).
            listed = discover(self.lake, warehouse.read_cursor()).files
            began = time.perf_counter()
            warehouse.not_loaded(listed)
            lookup = time.perf_counter() - began
            began = time.perf_counter()
            result = load_lake(self.lake, warehouse)
            load = time.perf_counter() - began
        build, nodes = self.build(per_batch=True)
        measured = Round(load, build, result.files_listed, lookup, nodes)
        if timed:
            self.rounds.append(measured)

    def median(self) -> Round:
        """Each figure's median over the rounds (the build: the one of median wall time)."""
        builds = sorted((r.build for r in self.rounds), key=lambda build: build.seconds)
        return Round(
            statistics.median(r.load for r in self.rounds),
            builds[len(builds) // 2],
            self.rounds[-1].files_listed,
            statistics.median(r.ledger_lookup for r in self.rounds),
            {name: statistics.median(r.nodes.get(name, 0.0) for r in self.rounds) for name in self.rounds[-1].nodes},
        )

    def checks(self) -> dict[str, bool]:
        expected = self.trades + sum(
            len(self.market.between(i, self.end_us, self.end_us + self.batches * FLUSH_US))
            for i in range(self.market.symbols)
        )
        with DuckDBWarehouse(self.settings.duckdb_path) as warehouse:
            (rows, distinct, ledger, ledger_keys, counted, staged), *_ = warehouse.execute(
                "select (select count(*) from raw.trades),"
                " (select count(distinct (symbol, trade_id)) from raw.trades),"
                " (select count(*) from raw.load_ledger), (select count(distinct file_key) from raw.load_ledger),"
                " (select sum(trade_count) from marts.candles_1m), (select count(*) from staging.stg_trades)"
            )
        return {
            "every trade loaded exactly once": rows == distinct == expected,
            "every file in the ledger exactly once": ledger == ledger_keys == self.files + self.new_files,
            "every trade counted once in 1m candles": counted == staged == expected,
        }


def measure(work: Path, size: Size, case: Case) -> tuple[HistoryWarehouse, HistoryWarehouse]:
    # The history ends 5 minutes before the current hour (every load it records happened before now),
    # so the hour the micro-batches land in already holds 55 minutes of stream files.
    end_us = now_us() // HOUR_US * HOUR_US - HOUR_END_GAP_US
    short, long = (
        HistoryWarehouse(days, Market(case.symbols, case.rate, end_us - days * DAY_US), end_us, work / f"{days}-days")
        for days in (size.short_days, size.long_days)
    )
    for warehouse in (short, long):
        warehouse.prepare(size.warm_up)
    # Round by round, in turns: whatever this process still warms up (imports, caches) is paid by
    # the untimed first rounds, and anything else sharing the machine falls on both alike.
    for timed in [False] * size.warm_up + [True] * size.rounds:
        short.round(timed)
        long.round(timed)
    return short, long


def days(count: int) -> str:
    return f"{count} day{'s' if count != 1 else ''}"


def report_pair(report: Report, label: str, short: float, long: float, unit: str, digits: int, note: str) -> None:
    report.figure(f"{label}, short history", short, unit, digits=digits, note=note)
    report.figure(f"{label}, long history", long, unit, digits=digits, note=note)
    report.figure(f"{label}, long / short", long / short if short else float("nan"), digits=2)


def node_label(name: str) -> str:
    """A node's name without what dbt adds to a test's: its namespace, its arguments but a row scope."""
    head, model, arguments = name.removeprefix("cryptoflow_").partition("candles_1m")
    return head + model + ("_rebuilt" if arguments.endswith("rebuilt") else "")


def report_nodes(report: Report, prefix: str, short: Round, long: Round) -> None:
    """candles_1m's model and each of its tests in the per-batch build (the mart that grows most with the
    history: a row per symbol-minute), then the other nodes' sum, each short against long."""
    names = sorted(name for name in long.nodes if CANDLES_1M_NODE.search(name))
    for name in [*names, None]:
        label, note = (node_label(name), "dbt's own time") if name else ("every other node", "dbt's own times, summed")

        def time_of(nodes: dict[str, float], name: str | None = name) -> float:
            return nodes.get(name, 0.0) if name else sum(t for n, t in nodes.items() if n not in names)

        report_pair(report, f"{prefix}{label}", time_of(short.nodes), time_of(long.nodes), "s", 3, note)


def report_case(report: Report, size: Size, case: Case, short: HistoryWarehouse, long: HistoryWarehouse) -> None:
    prefix = case.prefix
    for warehouse, which in ((short, "short"), (long, "long")):
        held = f"{case.described}, {days(warehouse.days)}: {warehouse.trades:,} trades"
        report.figure(f"{prefix}ledger rows, {which} history", warehouse.files, "files", note=held)
    for warehouse, which in ((short, "short"), (long, "long")):
        report.figure(f"{prefix}full build, {which} history", warehouse.full_build, "s", digits=2, note="every test")
    s, lg = short.median(), long.median()
    rounds = f"median of {size.rounds}"
    load = f"load_lake, {rounds}"
    report_pair(report, f"{prefix}load of a micro-batch", s.load * 1000, lg.load * 1000, "ms", 1, load)
    lookup = f"the listed files against raw.load_ledger, part of the load, {rounds}"
    report_pair(report, f"{prefix}ledger look-up", s.ledger_lookup * 1000, lg.ledger_lookup * 1000, "ms", 1, lookup)
    build = f"per-batch dbt build, {rounds}"
    report_pair(report, f"{prefix}incremental build", s.build.seconds, lg.build.seconds, "s", 2, build)
    report_pair(report, f"{prefix}incremental models", s.build.models, lg.build.models, "s", 2, "dbt's own timings")
    report_pair(report, f"{prefix}incremental tests", s.build.tests, lg.build.tests, "s", 2, "dbt's own timings")
    report_nodes(report, prefix, s, lg)
    listed = "every file of the hour partitions the writer's marker names, in the last round"
    report.figure(f"{prefix}files listed by a load", lg.files_listed, "files", note=listed)
    s_total, lg_total = s.load + s.build.seconds, lg.load + lg.build.seconds
    waited = "what a user waits for, in this process"
    report_pair(report, f"{prefix}load and build", s_total, lg_total, "s", 2, waited)


def main(smoke: bool = False) -> bool:
    size = SMOKE if smoke else FULL
    markets = "; ".join(case.described for case in size.cases)
    report = Report(
        f"history: a micro-batch's load and incremental build, {days(size.short_days)} vs {days(size.long_days)}"
        f" of history ({markets}; compacted hours in the ledger)"
    )
    checks: dict[tuple[str, str], bool] = {}
    for case in size.cases:
        with tempfile.TemporaryDirectory() as work_dir:
            short, long = measure(Path(work_dir), size, case)
            for warehouse, which in ((short, "short"), (long, "long")):
                for name, ok in warehouse.checks().items():
                    checks[(f"{case.prefix}{name}", which)] = ok
        report_case(report, size, case, short, long)
    for (name, which), ok in checks.items():
        report.check(f"{name}, {which} history", ok)
    return report.passed(enforce_targets=not smoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny size")
    sys.exit(0 if main(parser.parse_args().smoke) else 1)
