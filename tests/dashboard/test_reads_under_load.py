"""The dashboard's reads while the pipeline writes: 1,000 queries, no error, no lock.

Another process writes without pause, as ``make up`` does: new trades (and heartbeats) into the
lake, ``python -m include.cli load`` into a real DuckDB warehouse, then ``python -m include.cli
transform --per-batch`` (dbt) which publishes the dashboard's snapshot, again and again (the CLI's
``main`` in one process, so dbt parses once). Meanwhile this process asks ``MarketQueries`` over the
published snapshot for candles of every interval, tickers, health and symbols. Every answer must
come back, and the reads must span several publishes (seen in the snapshots they read), so an idle
writer fails the test. The control: opening ``warehouse.duckdb`` itself read-only during the same
writes fails with "Could not set lock" at least once, so the load here is real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from dashboard.queries import MarketQueries, ticker_of
from include.candles import CANDLE_SCHEMA, INTERVAL_NAMES
from include.config import load_settings
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
SYMBOLS = ("BTCUSDT", "ETHUSDT")
QUERIES = 1_000
PUBLISHES_DURING_READS = 2  # distinct snapshots published after the reads began, seen by the reads
TRADES_PER_BATCH = 120  # a trade a second: two more minutes of candles per symbol and batch
DEADLINE_SECONDS = 120  # for publishes after the 1,000 reads: a build takes 10-20 s on a busy machine
FIRST_PUBLISH_SECONDS = 300  # the first build parses the dbt project in full: 30 s and more when busy
WRITER = "tests.dashboard.test_reads_under_load"  # this module, as the writer process imports it


def write_continuously(lake_folder: str) -> None:
    """The writer process: trades and heartbeats into the lake, load, transform (and publish), forever.

    Each step prints one JSON line. A step that fails (e.g. the control's reader holding the file) is
    printed and the loop goes on, as the DAG's next run would.
    """
    from include.cli import main
    from include.lake.markers import mark_written
    from include.lake.store import LocalStore
    from include.lake.trades import write_trades
    from include.timeutil import HOUR_US, now_us
    from tests.support.trades import columns
    from tests.support.warehouse import write_heartbeats

    lake = LocalStore(Path(lake_folder))
    # Trades from an hour ago on (a batch is two minutes of them): the marts, which carry the last
    # close through empty minutes up to now, stay small, and no trade is in the future.
    origin_us = (now_us() - HOUR_US) // 60_000_000 * 60_000_000
    for batch in range(1_000_000):
        first_id, start_us = 1 + batch * TRADES_PER_BATCH, origin_us + batch * TRADES_PER_BATCH * 1_000_000
        keys = []
        for symbol in SYMBOLS:
            keys += write_trades(lake, columns(symbol, first_id, TRADES_PER_BATCH, start_us), "stream", now_us())
        mark_written(lake, "dashboard-load-test", keys)
        last = (first_id + TRADES_PER_BATCH - 1, start_us + (TRADES_PER_BATCH - 1) * 1_000_000)
        write_heartbeats(lake, dict.fromkeys(SYMBOLS, last), {"connection": 0, "state": "connected", "restarts": 0})
        for argv in (["load"], ["transform", "--per-batch"]):
            try:
                status = main(argv)
            except Exception as error:  # printed for the test, and the loop goes on
                status = f"{type(error).__name__}: {error}"
            print(json.dumps({"batch": batch, "step": argv[0], "status": status}), flush=True)


def _environment(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "WAREHOUSE": "duckdb",
        "EXCHANGE": "sandbox",
        "LAKE_URL": f"file://{tmp_path / 'lake'}",
        "DATA_DIR": str(tmp_path / "data"),
        "DUCKDB_PATH": str(tmp_path / "data" / "warehouse.duckdb"),
        "DASHBOARD_SNAPSHOT": str(tmp_path / "data" / "dashboard" / "marts.duckdb"),
        "DBT_TARGET_PATH": str(tmp_path / "dbt"),  # this warehouse's dbt artifacts, not the project's
        "DBT_LOG_PATH": str(tmp_path / "dbt" / "logs"),
    }


class Reads:
    """The dashboard's mix of queries, each checked; errors and what the reads saw, recorded."""

    def __init__(self, queries: MarketQueries) -> None:
        self.queries = queries
        self.count = 0
        self.errors: list[str] = []
        self.published: set[datetime] = set()  # the snapshots the health reads came from
        self.trades: list[int] = []  # the trades counted in each read of every 1m candle
        self._kinds = [*(("candles", interval) for interval in INTERVAL_NAMES), *(("ticker", s) for s in SYMBOLS)]
        self._kinds += [("health", None), ("symbols", None)]

    def one(self) -> None:
        kind, argument = self._kinds[self.count % len(self._kinds)]
        self.count += 1
        try:
            getattr(self, f"_{kind}")(argument)
        except Exception as error:  # every failure is the finding
            self.errors.append(f"{kind} {argument}: {type(error).__name__}: {error}")

    def _candles(self, interval: str) -> None:
        table = self.queries.candles(SYMBOLS[self.count % 2], interval)
        assert table.schema == CANDLE_SCHEMA
        assert table.num_rows > 0
        if interval == "1m":
            assert table.num_rows < 10_000, "every 1m candle, so its trades are all counted"
            self.trades.append(sum(table.column("trade_count").to_pylist()))

    def _ticker(self, symbol: str) -> None:
        ticker = ticker_of(symbol, self.queries.edge(symbol, "1m").minutes)  # as the page computes it
        assert ticker.symbol == symbol
        assert ticker.high >= ticker.last_price >= ticker.low > 0

    def _health(self, _: None) -> None:
        health = self.queries.health()
        assert health.exchange == "sandbox"
        assert [state.symbol for state in health.streams] == list(SYMBOLS)
        self.published.add(health.published_at)

    def _symbols(self, _: None) -> None:
        assert self.queries.symbols() == list(SYMBOLS)


def _direct_read(path: Path) -> str | None:
    """The control: the warehouse file itself, read-only, as a dashboard without a snapshot would."""
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            connection.execute("select count(*) from marts.candles_1m").fetchall()
    except duckdb.Error as error:
        return str(error)
    return None


@pytest.mark.timeout(600)  # a busy machine: the first dbt parse alone can take a minute
def test_a_thousand_reads_while_loads_transforms_and_publishes_run(tmp_path):
    env = _environment(tmp_path)
    settings = load_settings(env)
    queries = MarketQueries.duckdb_snapshot(settings.snapshot_path)
    lake = str(tmp_path / "lake")
    argv = [sys.executable, "-c", f"from {WRITER} import write_continuously; write_continuously({lake!r})"]
    log = tmp_path / "writer.log"
    with log.open("w") as output, process_group(argv, env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT):
        wait_until(lambda: _served(queries), FIRST_PUBLISH_SECONDS, f"the first snapshot with both symbols ({log})")
        reads, control = Reads(queries), []
        began = datetime.now(UTC)
        for _ in range(QUERIES):
            _read_and_probe(reads, control, settings.duckdb_path)
        # The reads go on until they have spanned publishes (and the control has met the lock): an
        # idle writer fails the test here.
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(_after(reads.published, began)) < PUBLISHES_DURING_READS or not _locked(control):
            assert time.monotonic() < deadline, (
                f"{reads.count} reads, publishes {_after(reads.published, began)}, control {control[-3:]}: {log}"
            )
            _read_and_probe(reads, control, settings.duckdb_path)
    steps = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"batch"')]
    assert reads.errors == [], reads.errors[:5]
    assert not any("lock" in message.lower() for message in reads.errors)
    assert reads.count >= QUERIES
    assert len(_after(reads.published, began)) >= PUBLISHES_DURING_READS
    assert reads.trades[-1] > reads.trades[0], "later reads count the trades of later loads"
    assert sum(1 for step in steps if step["step"] == "transform" and step["status"] == 0) >= PUBLISHES_DURING_READS
    assert _locked(control), control


def _read_and_probe(reads: Reads, control: list[str], warehouse: Path) -> None:
    """One dashboard read; every tenth, until one has met the lock, a direct read of the warehouse."""
    reads.one()
    if reads.count % 10 == 0 and not _locked(control):
        control.append(_direct_read(warehouse) or "read")


def _locked(control: list[str]) -> bool:
    return any("Could not set lock" in message for message in control)


def _served(queries: MarketQueries) -> bool:
    try:
        return queries.symbols() == list(SYMBOLS)
    except Exception:  # not published yet
        return False


def _after(published: set[datetime], began: datetime) -> list[datetime]:
    return sorted(moment for moment in published if moment is not None and moment > began)
