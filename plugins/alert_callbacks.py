"""The task callbacks that turn Airflow's own view of a task into pipeline alerts: two notifiers.

- ``RecordTaskFailure`` (``on_failure_callback``): Airflow calls it once a task has failed for good
  (its retries spent; a failing try with retries left calls ``on_retry_callback`` instead). It writes
  the task instance's failure record to the lake (include/alerts/task_failures.py): the error's first
  line, secrets masked, and the dbt tests it names as failed.
- ``ClearTaskFailure`` (``on_success_callback``): deletes the task's failure records (one listing when
  there are none), which resolves its incident at the next evaluation. It never fails the task it
  runs for: a lake error is logged.

Where they run on Airflow 3.3: in the task's own process, by the Task SDK's ``finalize`` after the
task ends (it logs and swallows a callback's exception). A task process that died without finishing
(killed, its heartbeat lost) has its ``on_failure_callback`` run by the dag-processor instead, with no
exception in the context: the record then says so. A notifier is a callable of the context, which is
what both accept. The alerts evaluation (include/alerts/task_checks.py) reads the records.

Every DAG wires them through ``default_args`` (``**task_alert_callbacks()``); building them opens
nothing, so parsing a DAG file does no work. The warehouse DAG's dbt group is the exception: its
models' sensors report the producer's one build (a failed test also fails the sensors of the models
it skipped), so only the producer records, and a failed build is one incident.

A third callback is a DAG's, not a task's: ``record_missed_deadline``, the ``SyncCallback`` of the
warehouse DAG's ``DeadlineAlert`` (``missed_deadline_alert``). When a run is not finished
``WAREHOUSE_DEADLINE_SECONDS`` after it was queued, the scheduler (which checks deadlines in its loop)
queues the callback on the executor, which runs it in a process of its own (LocalExecutor under
``make up``, a Celery worker under compose) with the run and the deadline as its context; it writes
the run's record in the lake (include/alerts/missed_deadlines.py). A ``SyncCallback``, not an
``AsyncCallback`` in the triggerer: the lake layer is blocking I/O (boto3), which would stall the
triggerer's event loop and every deferred task in it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback
from airflow.sdk.bases.notifier import BaseNotifier

from include.alerts.missed_deadlines import missed_deadline, write_missed_deadline
from include.alerts.task_failures import clear_failures, record_failure, task_failure
from include.config import load_settings
from include.lake.store import ObjectStore, open_lake
from include.timeutil import from_us, now_us


def _lake() -> ObjectStore:
    return open_lake(load_settings().lake_url)


def _map_index(ti: Any) -> int:
    index = getattr(ti, "map_index", None)
    return -1 if index is None else int(index)


class RecordTaskFailure(BaseNotifier):
    """``on_failure_callback``: record the failed task instance in the lake."""

    def notify(self, context: Any) -> None:
        ti = context["ti"]
        failure = task_failure(
            ti.dag_id,
            ti.task_id,
            _map_index(ti),
            ti.run_id,
            int(ti.try_number),
            from_us(now_us()),
            context.get("exception"),
        )
        key = record_failure(_lake(), failure)
        self.log.info("task failure recorded at %s: %s", key, failure.error)


class ClearTaskFailure(BaseNotifier):
    """``on_success_callback``: clear the task's failure records; never fails the task."""

    def notify(self, context: Any) -> None:
        ti = context["ti"]
        try:
            cleared = clear_failures(_lake(), ti.dag_id, ti.task_id, _map_index(ti))
        except Exception as error:  # the task succeeded: a lake hiccup here must not undo that
            self.log.warning("could not clear the failure records of %s.%s: %s", ti.dag_id, ti.task_id, error)
            return
        if cleared:
            self.log.info("the task recovered: failure records cleared: %s", cleared)


def task_alert_callbacks() -> dict[str, Any]:
    """The ``default_args`` entries every DAG adds: its tasks' failures recorded, and cleared on success."""
    return {"on_failure_callback": [RecordTaskFailure()], "on_success_callback": [ClearTaskFailure()]}


# For the tasks whose failure is another task's, already recorded (the dbt models' sensors report the
# producer's build; ``audit_failed`` repeats the audit's failure and, never succeeding, would never clear).
NO_TASK_ALERTS: dict[str, Any] = {"on_failure_callback": [], "on_success_callback": []}


def add_task_alert_callbacks(task: Any) -> None:
    """Give one task the callbacks after it was built, before the ones it has (Cosmos' producer adds its
    own XCom backup to ``on_failure_callback`` when it is built, which must stay)."""
    task.on_failure_callback = [RecordTaskFailure(), *task.on_failure_callback]
    task.on_success_callback = [ClearTaskFailure(), *task.on_success_callback]


def record_missed_deadline(context: dict[str, Any]) -> None:
    """The deadline callback: the run that missed its deadline, recorded in the lake.

    Airflow imports it by its path (``alert_callbacks.record_missed_deadline``: the plugins folder is on
    the path of every Airflow process) and calls it with ``context`` alone. An exception fails the
    callback, which Airflow logs in ``executor_callbacks/<dag>/<run>/`` of the task logs."""
    import logging

    log = logging.getLogger(__name__)
    missed = missed_deadline(context, from_us(now_us()))
    if missed is None:
        log.info("the run ended before its deadline (it failed): no missed deadline to record")
        return
    key = write_missed_deadline(_lake(), missed)
    log.info("missed deadline recorded at %s: run %s, deadline %s", key, missed.run_id, missed.deadline)


def missed_deadline_alert(seconds: int) -> DeadlineAlert:
    """A run not finished ``seconds`` after it was queued missed its deadline: ``record_missed_deadline``."""
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=seconds),
        callback=SyncCallback(record_missed_deadline),
    )
