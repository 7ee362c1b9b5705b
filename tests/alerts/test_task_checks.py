"""The task checks (include/alerts/task_checks.py) on failure records in a real lake folder, evaluated
into a real DuckDB warehouse: an incident opens once per task, keeps its id while the task stays
failed, and resolves when the records are cleared; a failure whose error names failed dbt tests is a
``dbt_test_failed`` incident naming them, and not also a ``task_failed`` one.

The dbt messages are real: a ``dbt build`` of ``stg_trades`` over a trade of negative quantity fails
its value test, read as ``include.transform`` words it (``TransformFailed``, the ``nightly_tests``
task) and as Cosmos' producer raises it (``CosmosDbtRunError``).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

import tests.support.airflow_env  # noqa: F401  (configures Airflow before Cosmos imports it)
from include.alerts.task_checks import DBT_TEST_FAILED, TASK_FAILED
from include.alerts.task_failures import (
    clear_failures,
    describe_error,
    failed_dbt_tests,
    record_failure,
    task_failure,
)
from include.config import load_settings
from include.lake.store import LocalStore
from include.warehouse.duckdb_backend import DuckDBWarehouse
from tests.support.task_alerts import evaluate_task_incidents

T0 = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
DBT_FAILURE = (
    "CosmosDbtRunError: dbt invocation completed with errors: "
    "not_null_columns_stg_trades_x: Got 2 results, configured to fail if != 0"
)
# stg_trades and its tests, but those that read models this build does not make (holes, anchors)
SELECT, EXCLUDE = ["stg_trades"], ["test_name:trade_ids_contiguous", "hourly_volume_matches_trades"]


@pytest.fixture
def lake(tmp_path):
    return LocalStore(tmp_path / "lake")


@pytest.fixture
def evaluate(tmp_path, lake):
    return functools.partial(evaluate_task_incidents, tmp_path, lake)


def _failure(task_id: str, run: int, error: str, map_index: int = -1, minutes: int = 0):
    return task_failure("warehouse", task_id, map_index, f"run_{run}", 1, T0 + timedelta(minutes=minutes), error)


def test_a_failed_task_is_one_incident_until_its_records_are_cleared(lake, evaluate):
    record_failure(lake, _failure("load", 1, "LakeError: S3 get_object failed"))
    (opened,), _ = evaluate()
    assert (opened.rule_id, opened.subject) == (TASK_FAILED, "warehouse.load")
    assert "run_1" in opened.message
    assert "LakeError: S3 get_object failed" in opened.message
    assert opened.event_time.replace(tzinfo=UTC) == T0

    record_failure(lake, _failure("load", 2, "LakeError: again", minutes=5))  # still failing: same incident
    (still,), resolved = evaluate()
    assert still.alert_id == opened.alert_id
    assert resolved == []

    assert len(clear_failures(lake, "warehouse", "load", -1)) == 2  # the task succeeded
    active, resolved = evaluate()
    assert active == []
    assert resolved == [opened.alert_id]

    record_failure(lake, _failure("load", 3, "LakeError: once more", minutes=60))  # a new incident
    (again,), _ = evaluate()
    assert again.alert_id != opened.alert_id


def test_a_mapped_task_instance_is_its_own_subject(lake, evaluate):
    record_failure(lake, _failure("repair", 1, "FillIncomplete: 3 ids missing", map_index=1))
    (opened,), _ = evaluate()
    assert opened.subject == "warehouse.repair[1]"
    assert clear_failures(lake, "warehouse", "repair", 0) == []  # another instance's success clears nothing
    assert [alert.alert_id for alert in evaluate()[0]] == [opened.alert_id]


def test_a_dbt_test_failure_is_its_own_incident_naming_the_tests(lake, evaluate):
    record_failure(lake, _failure("transform.dbt_producer_watcher", 1, DBT_FAILURE))
    (opened,), _ = evaluate()
    assert (opened.rule_id, opened.subject) == (DBT_TEST_FAILED, "warehouse.transform.dbt_producer_watcher")
    assert "not_null_columns_stg_trades_x" in opened.message


def test_the_error_is_one_line_without_secrets():
    error = RuntimeError("cannot reach postgresql://airflow:s3cret@db:5432/airflow?sslmode=x password=hunter2\nTrace")
    line = describe_error(error)
    assert line == "RuntimeError: cannot reach postgresql://db:5432 password=***"
    assert len(describe_error("x" * 2000)) == 500


@pytest.fixture(scope="module")
def failing_build(tmp_path_factory):
    """A DuckDB warehouse whose raw.trades holds a trade of negative quantity, and dbt's result of
    building stg_trades and its tests on it (the value test fails)."""
    from include.lake.trades import write_trades
    from include.transform import _invoke, dbt_args
    from tests.support.candles import load
    from tests.support.trades import START_US, columns

    folder = tmp_path_factory.mktemp("failing-dbt-test")
    path = folder / "warehouse.duckdb"
    lake = LocalStore(folder / "lake")
    write_trades(lake, columns("BTCUSDT", 1, 3), "stream", START_US)
    load(lake, path)
    with DuckDBWarehouse(path) as warehouse:  # a row no validation stopped, as a bug might write it
        warehouse.execute("update raw.trades set quantity = -1 where trade_id = 2")
    settings = load_settings({"DUCKDB_PATH": str(path), "WAREHOUSE": "duckdb"})
    args = dbt_args(settings, "build", select=SELECT, target_dir=folder / "dbt", exclude=EXCLUDE)
    return settings, folder, _invoke(settings, args)


def test_a_real_failed_dbt_test_is_named_as_cosmos_raises_it(failing_build):
    # The producer first: cosmos.dbt.runner imported alone is a circular import.
    from cosmos.operators.watcher import DbtProducerWatcherOperator  # noqa: I001
    from cosmos.dbt.runner import handle_exception_if_needed  # what the producer's handle_exception_dbt_runner calls
    from cosmos.exceptions import CosmosDbtRunError

    assert DbtProducerWatcherOperator.handle_exception_dbt_runner.__module__ == "cosmos.operators.local"

    _, _, outcome = failing_build
    failed = [str(result.node.name) for result in outcome.result if str(result.status) == "fail"]
    assert failed
    assert all("stg_trades" in name for name in failed)
    with pytest.raises(CosmosDbtRunError) as raised:  # what the warehouse DAG's producer fails with
        handle_exception_if_needed(outcome)
    assert failed_dbt_tests(str(raised.value)) == tuple(failed)
    record = task_failure("warehouse", "transform.dbt_producer_watcher", -1, "r", 1, T0, raised.value)
    assert record.is_dbt_test_failure
    assert record.error.startswith("CosmosDbtRunError: dbt invocation")


def test_a_real_failed_dbt_test_is_named_as_transform_failed_words_it(failing_build):
    from include.transform import TransformFailed, transform

    settings, folder, outcome = failing_build
    failed = tuple(str(result.node.name) for result in outcome.result if str(result.status) == "fail")
    with pytest.raises(TransformFailed) as raised:  # what nightly_tests fails with
        transform(settings, select=SELECT, target_dir=folder / "dbt", exclude=EXCLUDE, command="test")
    assert failed_dbt_tests(str(raised.value)) == failed


def test_a_failure_without_failed_tests_is_not_a_dbt_test_failure():
    record = task_failure("warehouse", "transform.dbt_producer_watcher", -1, "r", 1, T0, "Database Error in model x")
    assert not record.is_dbt_test_failure
