"""The pipeline checks that come from Airflow itself: a task that failed after its retries, and a dbt
test that failed (in the warehouse DAG's producer build or its ``nightly_tests``).

Both read the failure records the task callbacks keep in the lake (include/alerts/task_failures.py):
a record appears when a task fails for good and every record of the task goes when it next succeeds,
so an incident is open exactly while its task has records. One incident per task (per map index):

- ``dbt_test_failed`` for the failures whose error names failed dbt tests (not also ``task_failed``:
  a test that found rows is a fact about the data, and the page should say which tests);
- ``task_failed`` for every other failure.

The incident's id is the check, the subject and the oldest failure on record (its run and try), so
evaluating again while the task stays failed finds the same incident, and a failure after the task
recovered is a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from include.alerts.checks import CheckInput, PipelineCheck
from include.alerts.model import PIPELINE, Alert, alert_id
from include.alerts.task_failures import TaskFailure, read_failures

TASK_FAILED = "task_failed"
DBT_TEST_FAILED = "dbt_test_failed"


def _by_subject(failures: Iterable[TaskFailure]) -> dict[str, list[TaskFailure]]:
    """The failures of each task instance (subject), oldest first (``read_failures``' order kept)."""
    grouped: dict[str, list[TaskFailure]] = {}
    for failure in failures:
        grouped.setdefault(failure.subject, []).append(failure)
    return grouped


def _later(failures: list[TaskFailure]) -> str:
    return f" ({len(failures) - 1} later failures on record)" if len(failures) > 1 else ""


def _task_failed_message(failures: list[TaskFailure]) -> str:
    first = failures[0]
    return f"{first.subject} failed in run {first.run_id} (try {first.try_number}): {first.error}{_later(failures)}"


def _dbt_test_failed_message(failures: list[TaskFailure]) -> str:
    first = failures[0]
    tests = ", ".join(dict.fromkeys(name for failure in failures for name in failure.failed_tests))
    return f"dbt tests failed in {first.subject}, run {first.run_id}: {tests}{_later(failures)}"


def _incidents(check: str, failures: Iterable[TaskFailure], message: Callable[[list[TaskFailure]], str]) -> list[Alert]:
    alerts = []
    for subject, mine in _by_subject(failures).items():
        first = mine[0]
        alerts.append(
            Alert(
                alert_id=alert_id(check, subject, first.run_id, first.try_number),
                kind=PIPELINE,
                rule_id=check,
                subject=subject,
                message=message(mine),
                event_time=first.failed_at,
            )
        )
    return alerts


def task_failed(check_input: CheckInput) -> list[Alert]:
    """One incident per task with failures on record that are not dbt test failures."""
    failures = [failure for failure in read_failures(check_input.lake) if not failure.is_dbt_test_failure]
    return _incidents(TASK_FAILED, failures, _task_failed_message)


def dbt_test_failed(check_input: CheckInput) -> list[Alert]:
    """One incident per task whose failures on record are failed dbt tests, naming the tests."""
    failures = [failure for failure in read_failures(check_input.lake) if failure.is_dbt_test_failure]
    return _incidents(DBT_TEST_FAILED, failures, _dbt_test_failed_message)


TASK_CHECKS: dict[str, PipelineCheck] = {TASK_FAILED: task_failed, DBT_TEST_FAILED: dbt_test_failed}
