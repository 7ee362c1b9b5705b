"""A failed task's record in the lake: what the task callbacks write and clear (plugins/alert_callbacks.py)
and the task checks read (include/alerts/task_checks.py).

One object per failed task instance (its dag, task, map index, run and try: ``keys.task_failure_key``),
written by ``on_failure_callback`` once Airflow has spent the task's retries, and every record of the
task (of that map index) deleted by ``on_success_callback`` when it succeeds again. Records live in the
lake, not in the warehouse: DuckDB allows one writing process, and a failed task may be the one that
holds it.

The error is the exception's first line, with URLs cut to their host and ``password=...``-like values
masked (a connection's URL or a webhook's token must never reach an alert), at most ``ERROR_CHARS``.
A dbt test failure is recognised by dbt's own result message ("Got 3 results, configured to fail if
!= 0"), as Cosmos' producer raises it (one ``name: message`` line per failed node) and as
``include.transform.TransformFailed`` words it (``name: fail (message)``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from include.lake.keys import TASK_FAILURES_PREFIX, task_failure_key, task_failures_prefix
from include.lake.store import ObjectStore

ERROR_CHARS = 500
# dbt's message for a test that found rows (dbt/task/test.py), after the test's name and, in
# TransformFailed's wording, its status: "<name>: Got 3 results, ..." or "<name>: fail (Got 3 results, ...".
_FAILED_TEST = re.compile(r"(?:^|[\s;])([A-Za-z0-9_.]+): (?:fail \()?Got \d+ results?, configured to fail if")
_URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://(?:[^\s/@'\"]*@)?([^\s/@'\"?#]+)[^\s'\"]*", re.IGNORECASE)
_SECRET = re.compile(r"\b(password|passwd|pwd|secret|token|api_key|apikey)=\S+", re.IGNORECASE)
NO_EXCEPTION = "the task ended without an exception (killed, or its heartbeat was lost): see its log"


def failed_dbt_tests(message: str) -> tuple[str, ...]:
    """The dbt tests a failure message names as failed (found rows), in order, each once."""
    return tuple(dict.fromkeys(_FAILED_TEST.findall(message)))


def describe_error(error: BaseException | str | None) -> str:
    """The error's first line, secrets masked, at most ERROR_CHARS characters."""
    if error is None:
        return NO_EXCEPTION
    text = str(error).strip()
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    line = _SECRET.sub(r"\1=***", _URL.sub(r"\1://\2", text.splitlines()[0] if text else ""))
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"


@dataclass(frozen=True)
class TaskFailure:
    """One task instance that failed after its retries."""

    dag_id: str
    task_id: str
    map_index: int  # -1 for a task that is not mapped
    run_id: str
    try_number: int
    failed_at: datetime
    error: str  # describe_error's line
    failed_tests: tuple[str, ...] = ()  # the dbt tests that failed, when that is why the task failed

    @property
    def is_dbt_test_failure(self) -> bool:
        return bool(self.failed_tests)

    @property
    def subject(self) -> str:
        """What the incident is about: ``dag.task``, and ``[map_index]`` for a mapped instance."""
        task = f"{self.dag_id}.{self.task_id}"
        return f"{task}[{self.map_index}]" if self.map_index >= 0 else task

    @property
    def key(self) -> str:
        return task_failure_key(self.dag_id, self.task_id, self.map_index, self.run_id, self.try_number)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "dag_id": self.dag_id,
                "task_id": self.task_id,
                "map_index": self.map_index,
                "run_id": self.run_id,
                "try_number": self.try_number,
                "failed_at": self.failed_at.isoformat(),
                "error": self.error,
                "dbt_test_failure": self.is_dbt_test_failure,
                "failed_tests": list(self.failed_tests),
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> TaskFailure:
        fields = json.loads(data)
        return cls(
            dag_id=str(fields["dag_id"]),
            task_id=str(fields["task_id"]),
            map_index=int(fields["map_index"]),
            run_id=str(fields["run_id"]),
            try_number=int(fields["try_number"]),
            failed_at=datetime.fromisoformat(fields["failed_at"]),
            error=str(fields["error"]),
            failed_tests=tuple(str(name) for name in fields.get("failed_tests", ())),
        )


def task_failure(
    dag_id: str,
    task_id: str,
    map_index: int,
    run_id: str,
    try_number: int,
    failed_at: datetime,
    error: BaseException | str | None,
) -> TaskFailure:
    """The record of a failure: the error described, and the dbt tests it names as failed."""
    message = "" if error is None else str(error)
    return TaskFailure(
        dag_id, task_id, map_index, run_id, try_number, failed_at, describe_error(error), failed_dbt_tests(message)
    )


def record_failure(lake: ObjectStore, failure: TaskFailure) -> str:
    """Write the failure's record (its own key: writing it again writes the same object); its key."""
    lake.put(failure.key, failure.to_json())
    return failure.key


def clear_failures(lake: ObjectStore, dag_id: str, task_id: str, map_index: int) -> list[str]:
    """Delete every failure record of the task (one listing when there is none); the keys deleted."""
    cleared = [info.key for info in lake.list(task_failures_prefix(dag_id, task_id, map_index))]
    for key in cleared:
        lake.delete(key)
    return cleared


def read_failures(lake: ObjectStore) -> list[TaskFailure]:
    """Every failure on record, oldest first; a record cleared since the listing is skipped."""
    failures = []
    for info in lake.list(TASK_FAILURES_PREFIX):
        try:
            failures.append(TaskFailure.from_json(lake.get(info.key)))
        except FileNotFoundError:  # the task succeeded meanwhile and its callback cleared it
            continue
    return sorted(failures, key=lambda failure: (failure.failed_at, failure.run_id, failure.try_number))
