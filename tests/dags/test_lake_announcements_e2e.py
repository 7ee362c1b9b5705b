"""End to end under a real scheduler and triggerer: every flush is announced while the stream runs.

``airflow standalone`` runs the repo's ``stream_trades`` DAG against the sandbox, next to a small
DAG scheduled on the ``lake_trades`` Asset. The asset's watcher must turn flushes into asset events,
and each into a run of the consumer, while the one-hour stream window is still running: not at its
end.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from include.config import load_settings
from include.lake.store import LocalStore
from include.lake.trades import read_trade_ids
from include.pools import WAREHOUSE_WRITER
from include.up import airflow_env
from tests.support.net import free_port
from tests.support.paths import REPO_ROOT

CONSUMER_DAG = """
from datetime import datetime

from airflow.sdk import dag, task
from lake_assets import LAKE_TRADES


@dag(schedule=[LAKE_TRADES], start_date=datetime(2026, 1, 1), catchup=False, tags=["test"])
def lake_consumer():
    @task
    def consume():
        pass

    consume()


lake_consumer()
"""


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def loaded_ids(path: Path) -> list[int] | None:
    """Trade ids in raw.trades, or None while a load holds DuckDB's single-writer lock."""
    if not path.exists():
        return None
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            return [row[0] for row in connection.execute("select trade_id from raw.trades").fetchall()] or None
    except duckdb.Error:
        return None


def wait_for(condition, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; Airflow log tail:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_each_flush_becomes_an_asset_event_and_a_consumer_run_while_the_stream_runs(start_sandbox, tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    for dag_file in ("stream_trades.py", "warehouse.py"):
        (dags / dag_file).symlink_to(REPO_ROOT / "dags" / dag_file)
    (dags / "lake_consumer.py").write_text(CONSUMER_DAG)
    api_port = free_port()
    with start_sandbox(symbols=("BTCUSDT",), rate=50.0) as sandbox:
        settings = load_settings(
            {
                "LAKE_URL": f"file://{tmp_path / 'lake'}",
                "BINANCE_WS_URL": sandbox.ws_url,
                "BINANCE_REST_URL": sandbox.rest_url,
                "SYMBOLS": "BTCUSDT",
            }
        )
        warehouse_path = tmp_path / "warehouse.duckdb"
        env = airflow_env(tmp_path / "airflow", settings, api_port) | {
            "DUCKDB_PATH": str(warehouse_path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
        log = tmp_path / "standalone.log"
        with log.open("wb") as output:
            airflow = subprocess.Popen(
                [str(Path(sys.executable).with_name("airflow")), "standalone"],
                env=env,
                cwd=tmp_path,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        api = f"http://127.0.0.1:{api_port}/api/v2"
        try:
            wait_for(lambda: get_json(f"{api}/monitor/health"), 180, "the Airflow API", log)
            subprocess.run(
                [str(Path(sys.executable).with_name("airflow")), "pools", "set", WAREHOUSE_WRITER.name, "1", "test"],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )

            def announced():
                events = get_json(f"{api}/assets/events?limit=100")["asset_events"]
                from_watcher = [e for e in events if e["extra"].get("from_trigger")]
                return from_watcher if len(from_watcher) >= 3 else None

            events = wait_for(announced, 240, "three asset events from the lake watcher", log)
            assert all(e["name"] == "lake_trades" for e in events)
            assert all(e["extra"]["payload"]["lake_url"] == settings.lake_url for e in events)
            assert len({e["extra"]["payload"]["fingerprint"] for e in events}) == len(events), "an event repeated"
            consumer_runs = wait_for(
                lambda: get_json(f"{api}/dags/lake_consumer/dagRuns?limit=100")["dag_runs"] or None,
                120,
                "a run of the consumer DAG",
                log,
            )
            assert all(run["run_type"] == "asset_triggered" for run in consumer_runs)
            # The warehouse DAG, scheduled on the same asset, loaded the micro-batches as they landed.
            warehouse_runs = wait_for(
                lambda: (
                    [
                        r
                        for r in get_json(f"{api}/dags/warehouse/dagRuns?limit=100")["dag_runs"]
                        if r["state"] == "success" and r["run_type"] == "asset_triggered"
                    ]
                    or None
                ),
                180,
                "a successful asset-triggered warehouse run",
                log,
            )
            assert warehouse_runs
            # Besides those, at most the one nightly reconcile that unpausing catches up on.
            all_runs = get_json(f"{api}/dags/warehouse/dagRuns?limit=100")["dag_runs"]
            assert sum(run["run_type"] == "scheduled" for run in all_runs) <= 1
            assert {run["run_type"] for run in all_runs} <= {"asset_triggered", "scheduled"}
            loaded = wait_for(lambda: loaded_ids(warehouse_path), 60, "trades in raw.trades", log)
            lake_ids = set(read_trade_ids(LocalStore(tmp_path / "lake"), "BTCUSDT").tolist())
            assert set(loaded) <= lake_ids
            assert len(loaded) == len(set(loaded)), "a trade was loaded twice"
            # All of this happened while the stream's one-hour window was still open.
            stream_runs = get_json(f"{api}/dags/stream_trades/dagRuns?limit=10")["dag_runs"]
            assert [run["state"] for run in stream_runs] == ["running"]
            markers = list((tmp_path / "lake" / "status" / "writes").iterdir())
            assert markers, "the stream wrote no write marker"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(airflow.pid, signal.SIGTERM)
            try:
                airflow.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(airflow.pid, signal.SIGKILL)
                airflow.wait()
