"""Every DAG imports cleanly and follows the house rules: docs, tags, owner, retries."""

import json
import os
import sys

import pytest
from airflow.dag_processing.dagbag import DagBag

from include.config import ConfigError, load_settings
from tests.support.airflow_env import REPO_ROOT
from tests.support.processes import run_to_end


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAGs found"


PARSE = """
import json
import tests.support.airflow_env
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=str(tests.support.airflow_env.REPO_ROOT / "dags"))
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}))
"""


BAD_SETTINGS = {
    "SYMBOLS": "not a symbol",
    "LAKE_URL": "gs://x",
    "STREAM_SHARD_SIZE": "0",
    "SANDBOX_PORT": "abc",
    "WAREHOUSE": "oracle",
    "DUCKDB_PATH": "/dev/null/x",
    "MAINTENANCE_RETENTION_DAYS": "0",
    "WAREHOUSE_DEADLINE_SECONDS": "ten minutes",
}


@pytest.mark.parametrize("name", BAD_SETTINGS)
def test_each_bad_setting_is_refused_in_one_line_naming_it(name):
    """The settings the parse test below breaks are really bad: loading any of them is refused."""
    value = BAD_SETTINGS[name]
    with pytest.raises(ConfigError) as refused:
        load_settings({name: value})
    message = str(refused.value)
    assert f"{name}={value!r}" in message
    assert "\n" not in message


def test_a_bad_setting_breaks_no_dag_parse():
    """Settings are read when tasks run: a bad value fails those tasks, not the parse of every DAG.

    Parsed in a fresh process, so no module (the plugins above all) was imported with good settings.
    """
    env = {**os.environ, **BAD_SETTINGS, "PYTHONPATH": str(REPO_ROOT)}
    result = run_to_end([sys.executable, "-c", PARSE], env, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert {"stream_trades", "repair_gaps", "warehouse", "fill_gaps", "maintenance"} <= set(parsed["dags"])


def test_every_dag_has_docs_tags_and_an_owner(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert len(dag.doc_md.strip()) > 100, f"{dag_id}: doc_md is too short to explain the DAG"
        assert "cryptoflow" in dag.tags, f"{dag_id} lacks the cryptoflow tag"
        assert len(dag.tags) >= 2, f"{dag_id} needs a tag saying what it does"
        for task in dag.tasks:
            assert task.owner == "cryptoflow", f"{dag_id}.{task.task_id} has owner {task.owner!r}"


# Tasks that must not retry, and why: a retry would not change their answer.
NOT_RETRIED = {
    ("warehouse", "audit"): "a candle that differs from the exchange is a fact to look at",
    ("warehouse", "nightly_tests"): "a failed data test is a fact to look at",
    # Cosmos' watcher producer skips a second attempt rather than run a second dbt build; the
    # models' sensors only report what it did. The next load's run builds again.
    ("warehouse", "transform."): "the dbt build, run once per DAG run",
}


def test_every_task_retries_but_those_a_retry_cannot_fix(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            exempt = any(dag_id == d and task.task_id.startswith(prefix) for d, prefix in NOT_RETRIED)
            if exempt:
                assert task.retries == 0, f"{dag_id}.{task.task_id} retries a task a retry cannot fix"
            else:
                assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_stream_trades_is_one_mapped_poke_sensor_per_shard_announcing_the_lake(dagbag):
    dag = dagbag.dags["stream_trades"]
    stream = dag.get_task("stream")
    assert type(stream).__name__ == "MappedOperator"
    assert stream.operator_class.__name__ == "TradeStreamSensor"
    assert stream.partial_kwargs.get("mode", "poke") == "poke"
    assert stream.retry_delay.total_seconds() <= 10, "a crashed stream must be back within seconds"
    assert dag.max_active_runs >= 2, "windows overlap, so two runs must be able to run at once"
    outlets = stream.partial_kwargs["outlets"]
    assert [asset.name for asset in outlets] == ["lake_trades"]
    assert outlets[0].watchers, "the lake asset must be watched so each flush is announced"
    assert dag.timetable.summary == "0 * * * *"


def test_the_dbt_producer_writes_alone_and_its_build_runs_every_models_tests_but_the_nightly_ones(dagbag):
    """One build, every model's tests in it: no task process per model's tests (issue 19)."""
    from include.pools import WAREHOUSE_WRITER
    from include.transform import NIGHTLY_TAG

    dag = dagbag.dags["warehouse"]
    producer, load = dag.get_task("transform.dbt_producer_watcher"), dag.get_task("load")
    assert producer.pool == load.pool == WAREHOUSE_WRITER.name
    flags = producer.dbt_cmd_flags
    types = {flags[index + 1] for index, flag in enumerate(flags) if flag == "--resource-type"}
    assert {"model", "test"} <= types, f"the producer's build must run the models and their tests: {flags}"
    assert producer.exclude == f"tag:{NIGHTLY_TAG}"
    models = sorted(task.task_id for task in dag.tasks if task.task_id.endswith("_run"))
    assert len(models) == 12, models  # every model of the manifest is rendered, and visible in the UI
    assert not [task.task_id for task in dag.tasks if task.task_id.endswith((".test", "_test"))]


def test_each_models_task_follows_the_producer_alone_and_is_ended_by_the_triggerer(dagbag):
    """A model's task only reports the producer's build: it follows the producer alone (not dbt's four
    layers, a scheduling round each) and starts in the triggerer, which ends it (no task process), in
    the DAG as the scheduler reads it back from its serialized form."""
    from airflow.serialization.serialized_objects import BaseSerialization, DagSerialization

    dag = dagbag.dags["warehouse"]
    served = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    models = [task for task in served.tasks if task.task_id.endswith("_run")]
    assert len(models) == 12, [task.task_id for task in models]
    for task in models:
        assert task.upstream_task_ids == {"transform.dbt_producer_watcher"}, task.task_id
        assert task.start_from_trigger is True, task.task_id
        assert task.start_trigger_args.trigger_cls == "model_reports.ModelBuiltTrigger", task.task_id
        assert BaseSerialization.deserialize(task.start_trigger_args.trigger_kwargs) == {
            "model_unique_id": f"model.cryptoflow.{task.task_id.removeprefix('transform.').removesuffix('_run')}",
            "producer_task_id": "transform.dbt_producer_watcher",
        }
    others = [task.task_id for task in served.tasks if task.start_from_trigger and task not in models]
    assert others == []


def test_fill_gaps_runs_on_each_recorded_gap_one_run_at_a_time_within_the_rest_pool(dagbag):
    from include.pools import EXCHANGE_REST

    dag = dagbag.dags["fill_gaps"]
    assert [asset.name for asset in dag.timetable.asset_condition.objects] == ["lake_gaps"]
    (asset,) = dag.timetable.asset_condition.objects
    assert asset.watchers, "the gap asset must be watched so each recorded gap starts a run"
    assert dag.max_active_runs == 1
    fill = dag.get_task("fill")
    assert type(fill).__name__ == "DecoratedMappedOperator"  # one task per symbol with a pending gap
    assert fill.partial_kwargs["pool"] == EXCHANGE_REST.name
    assert dag.get_task("pending_symbols").downstream_task_ids == {"fill"}


def test_maintenance_runs_daily_one_run_at_a_time_its_two_tasks_apart(dagbag):
    dag = dagbag.dags["maintenance"]
    assert dag.timetable.summary == "0 3 * * *"
    assert dag.max_active_runs == 1
    assert not dag.catchup
    assert {task.task_id: task.upstream_task_ids for task in dag.tasks} == {
        "clean_metadata": set(),  # a failure of one does not keep the other from running
        "remove_old_logs": set(),
    }


def test_alerts_run_after_every_build_of_the_candle_marts_and_every_minute(dagbag):
    """The dbt producer, whose build builds every mart, emits the candle marts' Assets (Cosmos' own come
    from OpenLineage, not installed), and the alerts DAG is scheduled on all six, or on the minute."""
    from include.candles import INTERVALS
    from include.pools import WAREHOUSE_WRITER

    marts = sorted(interval.mart for interval in INTERVALS)
    warehouse = dagbag.dags["warehouse"]
    emitted = {asset.name: task.task_id for task in warehouse.tasks for asset in task.outlets if hasattr(asset, "uri")}
    assert emitted == dict.fromkeys(marts, "transform.dbt_producer_watcher")
    dag = dagbag.dags["alerts"]
    assert sorted(asset.name for asset in dag.timetable.asset_condition.objects) == marts
    assert type(dag.timetable.asset_condition).__name__ == "AssetAll"
    assert dag.timetable.timetable.expression == "* * * * *"
    assert dag.max_active_runs == 1
    (task,) = dag.tasks  # one task: a second would wait for the writer pool behind the warehouse DAG
    assert task.pool == WAREHOUSE_WRITER.name
    assert task.weight_rule == "absolute"
    assert task.priority_weight > max(len(warehouse.tasks), *(t.priority_weight for t in warehouse.tasks))


def test_the_warehouse_dag_has_its_deadline_from_the_setting(dagbag):
    """A run not finished WAREHOUSE_DEADLINE_SECONDS after it was queued calls the recording callback;
    the parse above had a bad value and kept the default (the run's load names the bad value)."""
    from airflow.sdk import DeadlineReference, SyncCallback

    (alert,) = dagbag.dags["warehouse"].deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval.total_seconds() == load_settings({}).warehouse_deadline_seconds == 600
    assert isinstance(alert.callback, SyncCallback)
    assert alert.callback.path == "alert_callbacks.record_missed_deadline"


@pytest.mark.parametrize(
    ("full", "run_type", "nightly"),
    [
        (False, "asset_triggered", False),
        (False, "scheduled", True),
        (True, "manual", True),
        (True, "asset_triggered", True),
    ],
)
def test_the_nightly_tests_run_on_the_reconcile_only(dagbag, monkeypatch, full, run_type, nightly):
    """``is_nightly`` (a short circuit out of the writer pool) lets ``nightly_tests`` run on the nightly
    run or one triggered with {"full": true}, and skips it after a micro-batch."""
    from types import SimpleNamespace

    dag = dagbag.dags["warehouse"]
    decide = dag.get_task("is_nightly").python_callable
    assert dag.get_task("is_nightly").downstream_task_ids == {"nightly_tests"}
    context = {"params": {"full": full}, "dag_run": SimpleNamespace(run_type=run_type)}
    module = sys.modules[decide.__module__]  # the DAG file, as the dag bag loaded it
    monkeypatch.setattr(module, "get_current_context", lambda: context)
    assert decide() is nightly
