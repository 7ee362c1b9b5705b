"""The warehouse DAG parses whatever the settings say: they are read when its task runs, not at parse."""

import json
import re
import sys
from pathlib import Path

import duckdb
import pytest

from include.config import ConfigError, load_settings
from include.lake.store import LocalStore
from include.pools import WAREHOUSE_WRITER
from include.sandbox.server import serve_in_thread
from include.timeutil import HOUR_US, now_us
from include.warehouse.duckdb_backend import DuckDBWarehouse
from tests.support.airflow_env import REPO_ROOT, airflow_subprocess_env, migrate_db
from tests.support.candles import assert_closed_candles_are_klines, query
from tests.support.dashboard import assert_snapshot_equals_warehouse
from tests.support.exchange import import_history, sandbox_config
from tests.support.processes import run_to_end
from tests.support.warehouse import assert_exactly_the_lake

AIRFLOW = str(Path(sys.executable).with_name("airflow"))

# A bad value for every setting the product validates.
BAD_SETTINGS = {
    "EXCHANGE": "kraken",
    "SANDBOX_PORT": "0",
    "LAKE_URL": "gs://bucket",
    "BINANCE_REST_URL": "ftp://example",
    "BINANCE_WS_URL": "http://example",
    "WAREHOUSE": "oracle",
    "SYMBOLS": "not a symbol",
    "SNOWFLAKE_CONN_ID": "not an id",
    "SNOWFLAKE_STORAGE_INTEGRATION": "x;y",
    "STREAM_SHARD_SIZE": "0",
}

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("warehouse")
print(json.dumps({
    "errors": {path: str(error)[-1000:] for path, error in bag.import_errors.items()},
    "pools": sorted({task.pool for task in dag.tasks}) if dag else None,
    "tasks": {
        task.task_id: {
            "pool": task.pool,
            "retries": task.retries,
            "upstream": sorted(task.upstream_task_ids),
            "downstream": sorted(task.downstream_task_ids),
            "trigger_rule": task.trigger_rule,  # a str enum: its value
        }
        for task in dag.tasks
    } if dag else None,
}))
"""


@pytest.mark.parametrize("name", sorted(BAD_SETTINGS))
def test_each_bad_value_is_really_refused(name):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: BAD_SETTINGS[name]})


def test_the_warehouse_dag_parses_with_every_setting_bad_and_writes_through_the_writer_pool():
    # A fresh process: a module imported earlier in this one would not be parsed again.
    parsed = run_to_end(
        [sys.executable, "-c", PARSE, str(REPO_ROOT / "dags" / "warehouse.py")],
        airflow_subprocess_env(**BAD_SETTINGS),
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    result = json.loads(parsed.stdout.splitlines()[-1])
    assert result["errors"] == {}
    assert result["pools"] == ["default_pool", WAREHOUSE_WRITER.name]  # the models' sensors wait outside it


def dags_test_warehouse(tmp_path, **settings: str):
    """``airflow dags test warehouse`` (a real run of the DAG, in one process), with these settings."""
    migrate_db()
    env = airflow_subprocess_env(**settings)
    pools = run_to_end([AIRFLOW, "pools", "set", WAREHOUSE_WRITER.name, "1", "test"], env, timeout=300)
    assert pools.returncode == 0, pools.stderr
    return run_to_end([AIRFLOW, "dags", "test", "warehouse"], env, timeout=600, cwd=tmp_path)


def airflow_tasks_test(tmp_path, task_id: str, *options: str, **settings: str):
    """``airflow tasks test warehouse <task>``: one task of the DAG, run for real, alone."""
    env = airflow_subprocess_env(**settings)
    return run_to_end([AIRFLOW, "tasks", "test", "warehouse", task_id, *options], env, timeout=300, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # past the liveness timeouts inside: a `dags test` (600 s), five `tasks test` (300 s each)
def test_a_run_loads_transforms_and_audits_and_a_bad_setting_or_candle_fails_it_naming_it(tmp_path):
    """``airflow dags test``: load, the dbt build rendered by Cosmos (each model and its tests), and
    the audit against the exchange, in one real run; then an altered candle fails the audit task,
    naming the bucket and the field, and a bad setting fails the run naming the value."""
    lake, path = LocalStore(tmp_path / "lake"), tmp_path / "w.duckdb"
    config = sandbox_config(symbols=("BTCUSDT",), rate=0.2, history_seconds=2 * 3600, weight_limit=10**6)
    with serve_in_thread(config) as sandbox:
        import_history(sandbox.rest_url, lake, ("BTCUSDT",), now_us() - 3 * HOUR_US, now_us())
        snapshot = tmp_path / "dashboard" / "marts.duckdb"
        settings = {"LAKE_URL": f"file://{lake.root}", "DUCKDB_PATH": str(path), "BINANCE_REST_URL": sandbox.rest_url}
        settings["DASHBOARD_SNAPSHOT"] = str(snapshot)
        run = dags_test_warehouse(tmp_path, **settings)
        log = run.stdout + run.stderr
        assert "state=success" in log, log[-4000:]
        ended = set(re.findall(r"\[DAG TEST\] end task task_id=(\S+)", log))
        models = ("stg_trades", "candles_1m", "candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d")
        expected = {"load", "transform.dbt_producer_watcher", "audit", "publish"}
        assert expected | {f"transform.{m}_run" for m in models} <= ended, ended
        assert_exactly_the_lake(lake, path)
        # Imported from before the market's first trade to now: every closed candle is complete.
        assert_closed_candles_are_klines(path, sandbox.rest_url, ("BTCUSDT",), all_complete=True)
        audited = dict(query(path, "select status, count(*) from marts.candle_audit group by status"))
        assert set(audited) == {"match"}, audited
        assert audited["match"] >= 60, audited  # every closed minute, and more
        # The dashboard's snapshot, published after the audit, is the warehouse's tables exactly.
        assert_snapshot_equals_warehouse(snapshot, path)
        assert query(snapshot, "select count(*) from candles_1m")[0][0] > 0

        # An altered candle: the audit fails, naming the bucket and the field, and is not retried.
        open_time = query(path, "select min(open_time) from marts.candles_1m where trade_count > 0")[0][0]
        with duckdb.connect(str(path)) as connection:
            connection.execute("update marts.candles_1m set high = high + 1 where open_time = ?", [open_time])
            connection.execute("delete from marts.candle_audit where interval = '1m' and open_time >= ?", [open_time])
        failed = airflow_tasks_test(tmp_path, "audit", **settings)
        # The tests that read every trade or every row of a mart: skipped after a micro-batch (is_nightly, out
        # of the writer pool, decides), run on a reconcile.
        skipped = airflow_tasks_test(tmp_path, "is_nightly", **settings)  # its other answer: test_dag_integrity
        nightly = airflow_tasks_test(tmp_path, "nightly_tests", "--task-params", '{"full": true}', **settings)
        # A candle that breaks an invariant, in a bucket the incremental build does not recompute, and a
        # trade no validation stopped (a sale of -1000), which breaks the candle it lands in. The
        # producer's build runs the marts' tests on the rows it rewrote (no task per model's tests), so
        # the producer fails on the second; the nightly tests read every row, so they fail on the first.
        with duckdb.connect(str(path)) as connection:
            connection.execute("update marts.candles_1m set low = high + 1 where open_time = ?", [open_time])
            connection.execute(
                "insert into raw.trades by name select * replace (trade_id + 1 as trade_id, -1000 as quantity,"
                " -1000 * price as quote_quantity, trade_time + interval 1 second as trade_time,"
                " now() as loaded_at) from raw.trades order by trade_id desc limit 1"
            )
        broken = airflow_tasks_test(tmp_path, "transform.dbt_producer_watcher", **settings)
        broken_nightly = airflow_tasks_test(tmp_path, "nightly_tests", "--task-params", '{"full": true}', **settings)
    log = broken.stdout + broken.stderr
    assert "new_state=failed" in log, log[-4000:]
    assert "candle_invariants_candles_1m_rebuilt" in log, log[-4000:]
    log = broken_nightly.stdout + broken_nightly.stderr
    assert "new_state=failed" in log, log[-4000:]
    assert "candle_invariants_candles_1m_: fail" in log, log[-4000:]  # the test of every row of the mart
    assert "Condition result is False" in skipped.stdout + skipped.stderr, (skipped.stdout + skipped.stderr)[-4000:]
    log = nightly.stdout + nightly.stderr
    assert "new_state=success" in log, log[-4000:]
    assert re.search(r"'nodes': ([5-9]|\d\d)", log), log[-4000:]  # the nightly tests ran, and passed
    assert "unique_combination_of_columns_stg_trades" in log, log[-4000:]
    log = failed.stdout + failed.stderr
    assert "new_state=failed" in log, log[-4000:]  # `airflow tasks test` itself exits 0 either way
    assert "up_for_retry" not in log, "a mismatch is not fixed by retrying"
    bucket = re.escape(f"BTCUSDT 1m {open_time.isoformat()}")
    assert re.search(rf"candles differ from the exchange: {bucket}[^|]*high: warehouse", log), log[-4000:]
    assert dict(query(path, "select status, count(*) from marts.candle_audit group by status"))["mismatch"] == 1

    # A bad setting fails the run's first task, naming the value, and no retry is tried on it.
    bad = airflow_tasks_test(tmp_path, "load", **settings, WAREHOUSE="oracle")
    log = bad.stdout + bad.stderr
    assert "new_state=failed" in log, log[-4000:]
    assert "WAREHOUSE='oracle' is not one of duckdb, snowflake" in log, log[-4000:]
    assert "up_for_retry" not in log, "a bad setting is not fixed by retrying"


@pytest.mark.slow
def test_the_producers_dbt_builds_the_duckdb_file_the_settings_resolve_when_it_runs(tmp_path):
    """DUCKDB_PATH relative to DATA_DIR, as include.config resolves it: the producer's dbt gets that
    file (include/transform_group.py sets it when the task runs), not the bare value, which dbt would
    take relative to the folder Cosmos runs it in."""
    settings = {"DATA_DIR": str(tmp_path / "data"), "DUCKDB_PATH": "w.duckdb"}
    resolved = load_settings(settings).duckdb_path
    assert resolved == tmp_path / "data" / "w.duckdb"
    resolved.parent.mkdir()
    with DuckDBWarehouse(resolved):  # the raw tables, as the load creates them
        pass
    migrate_db()
    run = airflow_tasks_test(tmp_path, "transform.dbt_producer_watcher", **settings)
    log = run.stdout + run.stderr
    assert "new_state=success" in log, log[-4000:]
    assert query(resolved, "select count(*) from marts.candles_1m") == [(0,)]  # built there, empty
    assert not list(tmp_path.glob("*.duckdb")), "dbt wrote a warehouse of its own"


def test_the_audit_and_the_dbt_build_are_not_retried_and_the_build_is_the_only_writer():
    """A mismatch or a failed build is a fact to look at, not a glitch; the writers' pool serialises
    DuckDB's one writing process, and the models' sensors wait outside it."""
    parsed = run_to_end(
        [sys.executable, "-c", PARSE, str(REPO_ROOT / "dags" / "warehouse.py")],
        airflow_subprocess_env(),
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    tasks = json.loads(parsed.stdout.splitlines()[-1])["tasks"]
    assert (tasks["audit"]["pool"], tasks["audit"]["retries"]) == (WAREHOUSE_WRITER.name, 0)
    assert tasks["transform.dbt_producer_watcher"]["pool"] == WAREHOUSE_WRITER.name
    assert tasks["transform.dbt_producer_watcher"]["retries"] == 0
    assert tasks["transform.dbt_producer_watcher"]["upstream"] == ["load"]
    sensors = {task: info for task, info in tasks.items() if task.endswith("_run")}
    assert len(sensors) == 12, sorted(sensors)  # every model: the manifest was rendered
    assert {info["pool"] for info in sensors.values()} == {"default_pool"}
    assert tasks["transform.stg_trades_run"]["upstream"] == ["transform.dbt_producer_watcher"]
    # The audit needs the build, not the models' reports of it: it follows the producer alone.
    assert tasks["audit"]["upstream"] == ["transform.dbt_producer_watcher"]
    # The dashboard's snapshot: written by the one writer, after the audit, whatever the audit's outcome.
    assert tasks["publish"]["pool"] == WAREHOUSE_WRITER.name
    assert tasks["publish"]["upstream"] == ["audit"]
    assert tasks["publish"]["trigger_rule"] == "all_done"
    assert tasks["publish"]["retries"] >= 1
    # Airflow judges a run by its last tasks, and publish (all_done) succeeds after a failed audit:
    # a last task that fails exactly when the audit failed keeps the run failed.
    assert tasks["publish"]["downstream"] == []
    failing = tasks["audit_failed"]
    assert (failing["upstream"], failing["downstream"], failing["trigger_rule"]) == (["audit"], [], "one_failed")
