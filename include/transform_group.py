"""The warehouse DAG's ``transform`` task group: how Cosmos renders and runs the dbt project (include/dbt).

The DAG calls ``DbtTaskGroup(project_config=project_config(), profile_config=profile_config(), ...)``
with the objects below, then ``wire_producer``:

- **LoadMode.DBT_MANIFEST**: the DAG is rendered from ``target/manifest.json``, which setup builds
  (``make manifest``, run by ``make up`` and ``make test``: ``python -m include.transform_group``),
  so parsing the DAG file runs no dbt.
- **ExecutionMode.WATCHER**: one producer task runs one ``dbt build`` (one DuckDB writer, in the
  ``warehouse_writer`` pool), and a sensor per model reports it. LOCAL mode would start a dbt process
  per model, and DuckDB allows one writing process per file. The tests tagged ``nightly`` (they read
  every trade, or every row of a mart, so their cost grows with the history) are left out here and
  run by the nightly reconcile; the marts' tests here read the rows the build rewrote.
- **TestBehavior.NONE**: the producer's ``dbt build`` runs every model's tests, and a failed test
  fails the producer, naming it. A task per model's tests (AFTER_EACH) only reported what the build had
  already decided, at the cost of a task process each: a micro-batch's run started twenty task
  processes on two cores, and the next run waited for all of them (issue 19).
- **Profiles**: DuckDB reads ``profiles.yml`` (no secret); the file comes from the environment that
  ``include.transform.dbt_environment`` makes of the settings, set on each task when it runs
  (``pre_execute``), not when the DAG is parsed. Snowflake's credentials come from the Airflow
  connection (SNOWFLAKE_CONN_ID, default ``snowflake_default``) through Cosmos' profile mapping.

Cosmos is imported in the functions, not at the top: ``python -m include.transform_group`` builds the
manifest without importing Airflow.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from include.transform import DBT_PROJECT_DIR, MANIFEST_PATH, PER_BATCH_EXCLUDE

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig

PROFILE_NAME = "cryptoflow"
# Deferred sensors look at the producer's progress this often: candles are fresh seconds after a load.
POKE_SECONDS = 1
PRODUCER_RUNS_TESTS = ("--resource-type", "test")


def project_config() -> ProjectConfig:
    """The dbt project, rendered from its manifest; it has no packages to install."""
    from cosmos import ProjectConfig

    return ProjectConfig(dbt_project_path=DBT_PROJECT_DIR, manifest_path=MANIFEST_PATH, install_dbt_deps=False)


def profile_config(env: Mapping[str, str] | None = None) -> ProfileConfig:
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


def execution_config() -> ExecutionConfig:
    """One producer running one ``dbt build`` in its task process, a sensor per model reporting it."""
    from cosmos import ExecutionConfig
    from cosmos.constants import ExecutionMode, InvocationMode

    return ExecutionConfig(execution_mode=ExecutionMode.WATCHER, invocation_mode=InvocationMode.DBT_RUNNER)


def render_config() -> RenderConfig:
    """A task per model from the manifest, none per test; the tests that read every trade or every row
    of a mart are the nightly reconcile's (the DAG's ``nightly_tests`` task)."""
    from cosmos import RenderConfig
    from cosmos.constants import LoadMode, TestBehavior

    return RenderConfig(
        load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.NONE, exclude=list(PER_BATCH_EXCLUDE)
    )


def operator_args() -> dict[str, Any]:
    """The arguments of every task of the group (Cosmos' ``operator_args``)."""
    return {"pre_execute": set_dbt_environment, "poke_interval": POKE_SECONDS, "install_deps": False}


def set_dbt_environment(context: Mapping[str, Any]) -> None:
    """Give the task's dbt the environment its profile reads (the DuckDB file), from the settings as
    they are when the task runs; a bad setting fails the task here, naming it."""
    from include.config import load_settings
    from include.transform import dbt_environment

    task = context["task"]
    task.env = {**(task.env or {}), **dbt_environment(load_settings())}


def wire_producer(group: DbtTaskGroup, pool: str) -> BaseOperator:
    """Put the producer, the one task that writes, in the writers' pool, and make it the one upstream
    of every model's task.

    Cosmos renders the models' tasks in the dbt graph's order (staging, then candles_1m, then the
    roll-ups) and, for a DbtTaskGroup, beside the producer, relying on its priority to run first.
    Under ``airflow dags test``, which runs one task at a time, a sensor picked first would wait for a
    producer that never starts: so the producer comes first. And only the producer: by then its one
    build has built every model, so a model's task only reports its result (``model_tasks``: the DAG
    has the triggerer end them, ``plugins/model_reports.py``), and the dbt graph's four layers would
    cost the run a scheduler and triggerer round each, which the next micro-batch's run waits for.
    The models' order is dbt's, shown in its docs and manifest. The tasks keep Cosmos' trigger rule
    (all_success): a failed build fails the run at the producer, which names the failed node, and the
    models' tasks are upstream_failed.
    Returns the producer: the tasks that need the build, and not the reports of it, follow it.
    """
    from cosmos.constants import PRODUCER_WATCHER_TASK_ID

    producer = group.tasks_map[PRODUCER_WATCHER_TASK_ID]  # where Cosmos keeps the watcher's producer
    producer.pool = pool
    # Under TestBehavior.NONE Cosmos limits the producer's build to models, seeds and snapshots: the
    # tests go back in, so the one build still runs every model's tests and a failure fails it.
    producer.dbt_cmd_flags = [*PRODUCER_RUNS_TESTS, *(producer.dbt_cmd_flags or [])]
    tasks = {task.task_id: task for task in group.iter_tasks()}
    for task in tasks.values():
        if task is producer:
            continue
        for upstream_id in task.upstream_task_ids & tasks.keys():
            _unlink(tasks[upstream_id], task)
        producer >> task
    return producer


def model_tasks(group: DbtTaskGroup) -> list[BaseOperator]:
    """The group's task per dbt model (Cosmos' watcher sensors: they carry the model's unique id)."""
    return [task for task in group.iter_tasks() if getattr(task, "model_unique_id", None)]


def _unlink(upstream: BaseOperator, downstream: BaseOperator) -> None:
    """Remove one edge between two tasks of the group (Airflow keeps it on both ends)."""
    upstream.downstream_task_ids.discard(downstream.task_id)
    downstream.upstream_task_ids.discard(upstream.task_id)


def build_manifest() -> int:
    """``dbt parse``: the manifest the DAG renders from (``make manifest``, run by ``make up`` and ``make test``)."""
    from include.config import ConfigError, load_settings
    from include.transform import TransformFailed, write_manifest

    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        print(f"dbt manifest: {write_manifest(settings)}")
    except TransformFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(build_manifest())
