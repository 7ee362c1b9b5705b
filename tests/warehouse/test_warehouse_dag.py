"""The warehouse DAG parses whatever the settings say: they are read when its task runs, not at parse."""

import json
import sys
from pathlib import Path

import pytest

from include.config import ConfigError, load_settings
from include.lake.store import LocalStore
from include.pools import WAREHOUSE_WRITER
from tests.support.airflow_env import REPO_ROOT, airflow_subprocess_env, migrate_db
from tests.support.processes import run_to_end
from tests.support.trades import fill_lake
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
    assert result["pools"] == [WAREHOUSE_WRITER.name]


def dags_test_warehouse(tmp_path, **settings: str):
    """``airflow dags test warehouse`` (a real run of the DAG, in one process), with these settings."""
    migrate_db()
    env = airflow_subprocess_env(**settings)
    pools = run_to_end([AIRFLOW, "pools", "set", WAREHOUSE_WRITER.name, "1", "test"], env, timeout=300)
    assert pools.returncode == 0, pools.stderr
    return run_to_end([AIRFLOW, "dags", "test", "warehouse"], env, timeout=600, cwd=tmp_path)


@pytest.mark.slow
def test_a_run_of_the_dag_loads_the_lake_and_a_bad_setting_fails_it_naming_the_value(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    fill_lake(lake, files=2)
    settings = {"LAKE_URL": f"file://{lake.root}", "DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    loaded = dags_test_warehouse(tmp_path, **settings)
    assert "state=success" in loaded.stdout + loaded.stderr, (loaded.stdout + loaded.stderr)[-4000:]
    assert_exactly_the_lake(lake, tmp_path / "w.duckdb")
    bad = dags_test_warehouse(tmp_path, **settings, WAREHOUSE="oracle")
    log = bad.stdout + bad.stderr
    assert "state=failed" in log, log[-4000:]
    assert "WAREHOUSE='oracle' is not one of duckdb, snowflake" in log, log[-4000:]
    assert "up_for_retry" not in log, "a bad setting is not fixed by retrying"
