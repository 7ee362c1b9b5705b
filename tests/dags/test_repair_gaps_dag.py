"""The repair DAG under ``airflow dags test``: one hour window, filled from the sandbox's REST history.

``repair_gaps`` runs on a ``CronDataIntervalTimetable("0 * * * *")``. A scheduled run's logical date
is its data interval's start; a manual run (which is what ``airflow dags test DAG_ID DATE`` makes)
gets ``timetable.infer_manual_data_interval(run_after=DATE)``: the last whole hour that ended at or
before DATE. So ``airflow dags test repair_gaps 10:00`` repairs [09:00, 10:00), and the ledger
report of the run is keyed by 09:00, which the test checks.
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.lake.keys import BATCH_PREFIX
from include.lake.store import LocalStore
from include.lake.trades import batch_object, read_trades, trade_keys
from include.pools import EXCHANGE_REST
from include.repair.ledger import read_report
from include.timeutil import to_us
from tests.support.airflow_env import airflow_subprocess_env, migrate_db
from tests.support.exchange import STREAMED_OR_BACKFILLED, assert_matches_exchange, rest_columns, rest_history
from tests.support.net import MICRO, http_get
from tests.support.processes import run_to_end
from tests.support.waiting import wait_until

SYMBOLS = ("BTCUSDT", "ETHUSDT")
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
STREAM_FILES = 12  # the window as a stream leaves it: many batches, BTCUSDT missing LOST_IDS of its ids
LOST_IDS = 10


def exchange_window(rest_url: str, symbol: str, start_us: int, end_us: int) -> dict[int, dict[str, Any]]:
    """The exchange's own record of the trades in [start_us, end_us) (REST historicalTrades, µs), by id."""
    return {
        row["id"]: row
        for row in rest_history(rest_url, symbol, headers=MICRO, until_us=end_us)
        if row["time"] >= start_us
    }


def trade_objects(lake: LocalStore) -> dict[str, str]:
    return {info.key: info.etag for info in lake.list("trades/")}


def assert_lake_is_the_window(lake: LocalStore, truth: dict[str, dict[int, dict[str, Any]]]) -> None:
    for symbol, rows in truth.items():
        table = read_trades(lake, symbol)  # every row stored, whatever its time
        counts = Counter(table["trade_id"].to_pylist())
        assert [i for i, n in counts.items() if n > 1] == [], f"{symbol}: ids stored twice"
        assert sorted(counts) == sorted(rows), f"{symbol}: the lake is not the exchange's window"
        assert_matches_exchange(table, rows, symbol, STREAMED_OR_BACKFILLED)


def write_stream_batches(lake: LocalStore, truth: dict[str, dict[int, dict[str, Any]]], lost: dict[str, int]) -> None:
    """The window's trades as a stream writer flushes them: ``STREAM_FILES`` batches, each holding
    every symbol, without ``lost[symbol]`` ids in the middle."""
    kept = {}
    for symbol, rows in truth.items():
        ordered = [rows[i] for i in sorted(rows)]
        middle = len(ordered) // 2
        kept[symbol] = ordered[:middle] + ordered[middle + lost[symbol] :]
    for part in range(STREAM_FILES):
        parts = [
            rest_columns(symbol, rows[part * len(rows) // STREAM_FILES : (part + 1) * len(rows) // STREAM_FILES])
            for symbol, rows in kept.items()
        ]
        now = to_us(datetime.now(UTC)) + part
        key, data = batch_object(parts, "stream", now, "stream-test", now)
        lake.put(key, data)


def assert_one_compacted_file_each(lake: LocalStore) -> None:
    for symbol in SYMBOLS:
        keys = trade_keys(lake, symbol)
        assert len(keys) == 1, keys
        assert "/compact-" in keys[0]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two `airflow dags test` runs, each with a 600 s liveness timeout
def test_dags_test_repairs_a_window_and_refills_it_after_data_loss(start_sandbox, tmp_path):
    migrate_db()
    pools = run_to_end([AIRFLOW, "pools", "set", EXCHANGE_REST.name, "2", "Binance REST"], airflow_subprocess_env())
    assert pools.returncode == 0, pools.stdout + pools.stderr
    lake_dir = tmp_path / "lake"
    lake = LocalStore(lake_dir)
    with start_sandbox(history_seconds=2 * 3600 + 600, rate=2.0, symbols=SYMBOLS) as sandbox:
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        for symbol in SYMBOLS:  # the window closes once the exchange has a trade after it
            after = f"{sandbox.rest_url}/api/v3/aggTrades?symbol={symbol}&startTime={to_us(hour)}&limit=1"
            wait_until(lambda url=after: http_get(url, MICRO)[2], 600, f"a {symbol} trade after {hour:%H:%M}")
        window_start, window_end = hour - timedelta(hours=1), hour  # wholly inside the sandbox's history
        env = airflow_subprocess_env(
            LAKE_URL=f"file://{lake_dir}",
            BINANCE_REST_URL=sandbox.rest_url,
            BINANCE_WS_URL=sandbox.ws_url,
            SYMBOLS=",".join(SYMBOLS),
        )

        def dags_test() -> str:
            result = run_to_end(
                [AIRFLOW, "dags", "test", "repair_gaps", window_end.isoformat(), "-c", '{"grace_minutes": 0}'],
                env,
                timeout=600,
                cwd=tmp_path,
            )
            log = result.stdout + result.stderr
            assert result.returncode == 0, log[-4000:]
            assert "state=success" in log, log[-4000:]
            return log

        truth = {s: exchange_window(sandbox.rest_url, s, to_us(window_start), to_us(window_end)) for s in SYMBOLS}
        assert all(len(rows) > 3000 for rows in truth.values()), {s: len(r) for s, r in truth.items()}
        lost_ids = {"BTCUSDT": LOST_IDS, "ETHUSDT": 0}
        write_stream_batches(lake, truth, lost_ids)
        dags_test()
        assert list(lake.list(BATCH_PREFIX)) == []  # split into files per symbol-hour first
        assert_lake_is_the_window(lake, truth)
        for symbol in SYMBOLS:
            report = read_report(lake, symbol, window_start)
            assert report is not None, f"no ledger report for {symbol} at {window_start}"
            assert (report.start, report.end) == (window_start.isoformat(), window_end.isoformat())
            assert (report.expected, report.present_before, report.filled) == (
                len(truth[symbol]),
                len(truth[symbol]) - lost_ids[symbol],
                lost_ids[symbol],
            )
            assert (report.missing, report.holes) == (0, [])
            assert report.end_id - report.first_id == report.expected
        # Verified complete, each symbol's window was compacted: its split stream batches and the fill in one.
        assert_one_compacted_file_each(lake)
        first_objects = trade_objects(lake)

        # Data loss: one of BTCUSDT's backfill files of the window is deleted; the operator re-runs the window.
        keys = trade_keys(lake, "BTCUSDT", to_us(window_start), to_us(window_end))
        assert keys
        lost = keys[0]
        lake.delete(lost)
        left = {s: len(read_trades(lake, s)) for s in SYMBOLS}
        assert left["BTCUSDT"] < len(truth["BTCUSDT"])
        dags_test()
        assert_lake_is_the_window(lake, truth)
        assert set(trade_objects(lake)) == set(first_objects)  # the same deterministic keys, nothing more
        for symbol in SYMBOLS:
            report = read_report(lake, symbol, window_start)
            assert report is not None
            assert report.missing == 0
            assert report.present_before == left[symbol]
            assert report.filled == len(truth[symbol]) - left[symbol]
        (refill,) = read_report(lake, "BTCUSDT", window_start).files
        assert "/backfill-" in refill  # compacted again since: the same key as the lost one
        assert read_report(lake, "ETHUSDT", window_start).files == []
        assert_one_compacted_file_each(lake)

        # A third run finds the window complete and changes no trade object.
        second_objects = trade_objects(lake)
        dags_test()
        assert trade_objects(lake) == second_objects
        for symbol in SYMBOLS:
            report = read_report(lake, symbol, window_start)
            assert report is not None
            assert (report.present_before, report.filled, report.missing) == (len(truth[symbol]), 0, 0)
