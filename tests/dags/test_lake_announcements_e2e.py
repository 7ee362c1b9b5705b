"""End to end under a real scheduler and triggerer: every flush is announced and loaded while the stream runs.

``airflow standalone`` runs the repo's ``stream_trades`` and ``warehouse`` DAGs against the sandbox,
next to a small DAG scheduled on the ``lake_trades`` Asset. The asset's watcher must turn flushes
into asset events, and each into a run of the consumer and of the warehouse load, while the
one-hour stream window is still running: not at its end. Once the exchange stops sending trades,
the warehouse must hold exactly the lake's trade ids: every one, once.

Every wait is on a condition with a generous deadline (the machine may be busy); every process the
test starts, Airflow's task processes included, is ended when it ends, pass or fail.
"""

import sys
from pathlib import Path

import duckdb
import pytest

from include.config import load_settings
from include.lake.store import LocalStore
from include.lake.trades import read_trade_ids
from include.pools import WAREHOUSE_WRITER
from include.up import airflow_env
from tests.support.airflow_api import Airflow
from tests.support.net import free_port, http_post_json
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group, run_to_end

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


def loaded_ids(path: Path) -> list[int] | None:
    """Trade ids in raw.trades, or None while a load holds DuckDB's single-writer lock."""
    if not path.exists():
        return None
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            return [row[0] for row in connection.execute("select trade_id from raw.trades").fetchall()]
    except duckdb.Error:
        return None


class WarehouseEqualsLake:
    """A condition: once no load is queued or running, the warehouse's trade ids are the lake's.

    Returns (loaded ids, lake ids) when equal, else None; ``difference`` says what differed last.
    """

    def __init__(self, airflow: Airflow, lake: LocalStore, warehouse_path: Path) -> None:
        self.airflow, self.lake, self.warehouse_path = airflow, lake, warehouse_path
        self.difference = "not compared yet"

    def __call__(self) -> tuple[list[int], list[int]] | None:
        if self.airflow.runs("warehouse", "&state=queued&state=running"):
            return None  # reading now would compete with the load for DuckDB's lock
        loaded = loaded_ids(self.warehouse_path)
        if loaded is None:
            return None
        in_lake = read_trade_ids(self.lake, "BTCUSDT").tolist()  # sorted, unique
        if sorted(loaded) == in_lake:
            return loaded, in_lake
        missing, extra = set(in_lake) - set(loaded), set(loaded) - set(in_lake)
        twice = len(loaded) - len(set(loaded))
        self.difference = f"{len(missing)} lake ids not loaded, {len(extra)} loaded ids not in the lake, {twice} twice"
        return None


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_each_flush_is_announced_and_loaded_while_the_stream_runs_and_the_warehouse_equals_the_lake(
    start_sandbox, tmp_path
):
    dags = tmp_path / "dags"
    dags.mkdir()
    for dag_file in ("stream_trades.py", "warehouse.py"):
        (dags / dag_file).symlink_to(REPO_ROOT / "dags" / dag_file)
    (dags / "lake_consumer.py").write_text(CONSUMER_DAG)
    api_port = free_port()
    airflow_command = str(Path(sys.executable).with_name("airflow"))
    with start_sandbox(symbols=("BTCUSDT",), rate=50.0) as sandbox:
        settings = load_settings(
            {
                "DATA_DIR": str(tmp_path / "data"),
                "LAKE_URL": f"file://{tmp_path / 'lake'}",
                "BINANCE_WS_URL": sandbox.ws_url,
                "BINANCE_REST_URL": sandbox.rest_url,
                "SYMBOLS": "BTCUSDT",
            }
        )
        lake = LocalStore(tmp_path / "lake")
        warehouse_path = tmp_path / "warehouse.duckdb"
        env = airflow_env(tmp_path / "airflow", settings, api_port) | {
            "DUCKDB_PATH": str(warehouse_path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
        log = tmp_path / "standalone.log"
        airflow = Airflow(f"http://127.0.0.1:{api_port}/api/v2", log)
        with (
            log.open("wb") as output,
            process_group([airflow_command, "standalone"], env, cwd=tmp_path, stdout=output, stderr=output),
        ):
            airflow.wait(lambda: airflow.get("/monitor/health"), 300, "the Airflow API")
            pools = run_to_end([airflow_command, "pools", "set", WAREHOUSE_WRITER.name, "1", "test"], env, timeout=300)
            assert pools.returncode == 0, pools.stderr

            def announced():
                events = airflow.get("/assets/events?limit=100")["asset_events"]
                from_watcher = [e for e in events if e["extra"].get("from_trigger")]
                return from_watcher if len(from_watcher) >= 3 else None

            events = airflow.wait(announced, 400, "three asset events from the lake watcher")
            assert all(e["name"] == "lake_trades" for e in events)
            assert len({e["extra"]["payload"]["fingerprint"] for e in events}) == len(events), "an event repeated"
            consumer_runs = airflow.wait(lambda: airflow.runs("lake_consumer") or None, 300, "a consumer run")
            assert all(run["run_type"] == "asset_triggered" for run in consumer_runs)
            # The warehouse DAG, scheduled on the same asset, loads the micro-batches as they land.
            airflow.wait(
                lambda: airflow.runs("warehouse", "&state=success&run_type=asset_triggered") or None,
                300,
                "a successful asset-triggered warehouse run",
            )
            # All of this while the stream's one-hour window is still open.
            # (Two runs when the test spans an hour boundary: the next window opens before this one ends.)
            states = [run["state"] for run in airflow.runs("stream_trades")]
            assert states, "no stream run"
            assert set(states) == {"running"}, states
            assert list((tmp_path / "lake" / "status" / "writes").iterdir()), "the stream wrote no write marker"

            # The exchange stops sending trades (the stream stays connected): the lake stops growing,
            # its last flush is announced and loaded, and the warehouse must then hold exactly the lake.
            assert http_post_json(f"{sandbox.rest_url}/admin", {"skip_fraction": 1.0})[0] == 200
            equal = WarehouseEqualsLake(airflow, lake, warehouse_path)
            try:
                loaded, in_lake = airflow.wait(equal, 400, "raw.trades to hold exactly the lake's trade ids")
            except AssertionError as error:
                raise AssertionError(f"{equal.difference}; {error}") from None
            assert len(loaded) == len(set(loaded)), "a trade was loaded twice"
            assert set(loaded) == set(in_lake)
            assert in_lake, "the stream wrote no trades"
            # Besides the asset-triggered runs, at most the one nightly reconcile unpausing catches up on.
            assert len(airflow.runs("warehouse", "&run_type=scheduled")) <= 1
            assert airflow.runs("warehouse", "&run_type=manual&run_type=backfill") == []
