"""How Airflow runs the dbt project: the Cosmos configuration of the warehouse DAG's transform.

- **LoadMode.DBT_MANIFEST**: the DAG is rendered from ``target/manifest.json``, which setup builds
  (``make up`` and ``make test`` run ``dbt parse``), so parsing the DAG file runs no dbt.
- **ExecutionMode.WATCHER**: one producer task runs one ``dbt build`` (one DuckDB writer, in the
  ``warehouse_writer`` pool), and a sensor per model reports it. LOCAL mode would start a dbt process
  per model, and DuckDB allows one writing process per file. The tests tagged ``nightly`` (they read
  every trade, so their cost grows with the history) are left out here and run by the nightly reconcile.
- **TestBehavior.NONE**: the producer's ``dbt build`` runs every model's tests, and a failed test
  fails the producer, naming it. A task per model's tests (AFTER_EACH) only reported what the build had
  already decided, at the cost of a task process each: a micro-batch's run started twenty task
  processes on two cores, and the next run waited for all of them (issue 19).
- **Profiles**: DuckDB reads ``profiles.yml`` (no secret: the file path comes from DUCKDB_PATH,
  resolved by include.config when the task runs); Snowflake's credentials come from the Airflow
  connection (SNOWFLAKE_CONN_ID, default ``snowflake_default``) through Cosmos' profile mapping.
- Each model task emits an Asset when it succeeds; ``MART_ASSETS`` names the marts' Assets, for the DAGs
  that schedule on fresh candles.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from include.transform import DBT_PROJECT_DIR, PER_BATCH_EXCLUDE

MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"
PROFILE_NAME = "cryptoflow"
# Deferred sensors look at the producer's progress this often: candles are fresh seconds after a load.
POKE_SECONDS = 1
PRODUCER_RUNS_TESTS = ("--resource-type", "test")


def duckdb_path() -> str:
    """DUCKDB_PATH resolved as everywhere else (include.config); called when a task renders, not at parse."""
    from include.config import load_settings

    return str(load_settings().duckdb_path)


def profile_config(env: Mapping[str, str] | None = None):  # noqa: ANN201 - cosmos.ProfileConfig, imported lazily
    """The dbt profile for the configured warehouse.

    Read at parse time, so it does not fail on a bad setting: any WAREHOUSE but ``snowflake`` renders
    the DuckDB profile, and the load task (which runs first) fails naming the bad value.
    """
    from cosmos import ProfileConfig
    from cosmos.profiles import SnowflakeUserPasswordProfileMapping

    env = os.environ if env is None else env
    if env.get("WAREHOUSE") == "snowflake":
        mapping = SnowflakeUserPasswordProfileMapping(
            conn_id=env.get("SNOWFLAKE_CONN_ID", "snowflake_default"), profile_args={"schema": "staging"}
        )
        return ProfileConfig(profile_name=PROFILE_NAME, target_name="snowflake", profile_mapping=mapping)
    return ProfileConfig(
        profile_name=PROFILE_NAME, target_name="duckdb", profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml"
    )


def transform_group_arguments() -> dict[str, object]:
    """The keyword arguments of the warehouse DAG's ``DbtTaskGroup``."""
    from cosmos import ExecutionConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

    return {
        "project_config": ProjectConfig(
            dbt_project_path=DBT_PROJECT_DIR, manifest_path=MANIFEST_PATH, install_dbt_deps=False
        ),
        "profile_config": profile_config(),
        "execution_config": ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER, invocation_mode=InvocationMode.DBT_RUNNER
        ),
        # The tests that read every trade are the nightly reconcile's (the `nightly_tests` task).
        "render_config": RenderConfig(
            load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.NONE, exclude=list(PER_BATCH_EXCLUDE)
        ),
        "operator_args": {
            "env": {"DUCKDB_PATH": "{{ duckdb_path() }}"},
            "poke_interval": POKE_SECONDS,
            "install_deps": False,
        },
    }


def wire_producer(group: object, pool: str) -> object:
    """Put the producer, the one task that writes, in the writers' pool, and upstream of the models.

    Cosmos does the second for a DbtDag, not for a DbtTaskGroup: there the models' sensors start beside
    the producer and rely on its priority to run first. Under ``airflow dags test``, which runs one task
    at a time, a sensor picked first would wait for a producer that never starts. The sensors keep
    Cosmos' trigger rule ("always"), so each still reports its own model when the build failed.
    Returns the producer: the tasks that need the build, and not the sensors' reports, follow it.
    """
    from cosmos.operators.watcher import DbtProducerWatcherOperator

    tasks = list(group.iter_tasks())
    producers = [task for task in tasks if isinstance(task, DbtProducerWatcherOperator)]
    assert len(producers) == 1, f"expected one dbt producer task, found {len(producers)}"
    producer = producers[0]
    producer.pool = pool
    # Under TestBehavior.NONE Cosmos limits the producer's build to models, seeds and snapshots: the
    # tests go back in, so the one build still runs every model's tests and a failure fails it.
    producer.dbt_cmd_flags = [*PRODUCER_RUNS_TESTS, *(producer.dbt_cmd_flags or [])]
    inside = {task.task_id for task in tasks}
    for task in tasks:
        if task is not producer and not task.upstream_task_ids & inside:
            producer >> task
    return producer


def build_manifest() -> int:
    """``dbt parse``: the manifest the DAG renders from (run by ``make up`` and ``make test``)."""
    from dbt.cli.main import dbtRunner

    from include.config import ConfigError, load_settings
    from include.transform import dbt_args

    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.environ["DUCKDB_PATH"] = str(settings.duckdb_path)  # profiles.yml reads it; parse opens no file
    outcome = dbtRunner().invoke([*dbt_args(settings, "parse", write_json=True), "--quiet"])
    if not outcome.success:
        print(f"error: dbt parse failed: {outcome.exception or 'see include/dbt/logs/dbt.log'}", file=sys.stderr)
        return 1
    print(f"dbt manifest: {MANIFEST_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(build_manifest())
