"""The dbt models' tasks of the warehouse DAG, ended by the triggerer from the producer's build: no task
process each.

Cosmos renders a task per model (``transform.<model>_run``, a watcher sensor) that reports what the
producer's one ``dbt build`` did to its model: green when dbt built it, red naming it when dbt failed
it. As sensors, each started a task process after every micro-batch (twelve per run, about half a
second of CPU each): on two cores they took the CPU from the next load, the dbt build and the alerts
run, on the path of every market alert (issue 23). Here each model's task starts in the triggerer
(Airflow's ``start_from_trigger``): the scheduler defers it as soon as the producer succeeded, and
``ModelBuiltTrigger`` reads the model's result from the producer's XCom (Cosmos' key) and ends the
task, successful or failed, without a worker ever running it.

``airflow dags test`` ignores ``start_from_trigger``: there the sensors run as Cosmos made them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import (
    BaseTrigger,
    StartTriggerArgs,
    TaskFailedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)
from cosmos.operators._watcher.state import DBT_SUCCESS_STATUSES, get_status_xcom_key

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

log = logging.getLogger(__name__)


def model_outcome(model_unique_id: str, result: Any) -> TaskSuccessEvent | TaskFailedEvent:
    """How the model's task ends, from what the producer's build recorded for it (None: nothing)."""
    status = result.get("status") if isinstance(result, dict) else None
    if status in DBT_SUCCESS_STATUSES:  # Cosmos' own: success, pass or warn
        log.info("dbt built %s in the producer's build (%s)", model_unique_id, status)
        return TaskSuccessEvent()
    if status is None:
        log.error("the producer's build recorded no result for %s: see the producer's log", model_unique_id)
    else:
        log.error("dbt did not build %s (%s): the producer's log names the error", model_unique_id, status)
    return TaskFailedEvent()


class ModelBuiltTrigger(BaseTrigger):
    """Ends one model's task from its result in the producer's XCom, read once: the task starts only
    after the producer succeeded, so the result is there."""

    def __init__(self, model_unique_id: str, producer_task_id: str) -> None:
        super().__init__()
        self.model_unique_id = model_unique_id
        self.producer_task_id = producer_task_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"model_unique_id": self.model_unique_id, "producer_task_id": self.producer_task_id},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.sdk.execution_time.xcom import XCom
        from asgiref.sync import sync_to_async

        ti = self.task_instance  # the model's task: its DAG run is the producer's
        result = await sync_to_async(XCom.get_one)(
            run_id=ti.run_id,
            key=get_status_xcom_key(self.model_unique_id),
            task_id=self.producer_task_id,
            dag_id=ti.dag_id,
            map_index=ti.map_index,
        )
        yield model_outcome(self.model_unique_id, result)


def end_in_triggerer(model_tasks: Iterable[BaseOperator], producer_task_id: str) -> None:
    """Start each of Cosmos' model tasks in the triggerer, ended by ``ModelBuiltTrigger``."""
    for task in model_tasks:
        trigger = ModelBuiltTrigger(task.model_unique_id, producer_task_id)
        classpath, kwargs = trigger.serialize()
        task.start_trigger_args = StartTriggerArgs(
            trigger_cls=classpath,
            trigger_kwargs=kwargs,
            next_method="execute_complete",  # never called: the trigger ends the task itself
            next_kwargs=None,
            timeout=None,
        )
        task.start_from_trigger = True
