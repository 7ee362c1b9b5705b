"""A DAG run that missed its deadline, on record in the lake: what the deadline callback writes
(plugins/alert_callbacks.py, ``record_missed_deadline``, through ``write_missed_deadline``) and the
``deadline_missed`` check reads (include/alerts/deadline_checks.py).

One object per run (``keys.missed_deadline_key``): a run has one deadline, so a callback run twice
writes the same object. Airflow hands the callback a small context (``Deadline.handle_miss`` on 3.3.2):
the run as the REST API shows it (``dag_run``: ``dag_id``, ``dag_run_id``, ``queued_at``, ``end_date``,
``state``, ...) and the deadline (``deadline_time``), times as ISO text or datetimes.

Airflow prunes a deadline only when its run *succeeds* before it: a run that failed early keeps its
deadline, and the scheduler calls the callback when that time passes. Such a run did not miss its
deadline (its failure is the task checks' incident), so ``missed_deadline`` answers None for a run that
ended before its deadline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from include.lake.keys import MISSED_DEADLINES_PREFIX, missed_deadline_key
from include.lake.store import ObjectStore


def _moment(value: object) -> datetime | None:
    """A time of Airflow's context (a datetime, or ISO text as the REST API writes it), in UTC."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class MissedDeadline:
    """One run not finished by its deadline: when it was queued, the deadline, when the miss was seen."""

    dag_id: str
    run_id: str
    queued_at: datetime | None  # None for a run Airflow has no queue time for (the deadline still says when)
    deadline: datetime
    missed_at: datetime
    run_state: str  # the run's state when the miss was seen (queued, running)

    @property
    def key(self) -> str:
        return missed_deadline_key(self.dag_id, self.run_id)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "queued_at": self.queued_at.isoformat() if self.queued_at else None,
                "deadline": self.deadline.isoformat(),
                "missed_at": self.missed_at.isoformat(),
                "run_state": self.run_state,
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> MissedDeadline:
        fields = json.loads(data)
        deadline, missed_at = _moment(fields["deadline"]), _moment(fields["missed_at"])
        if deadline is None or missed_at is None:
            raise ValueError(f"a missed deadline without its times: {fields}")
        return cls(
            dag_id=str(fields["dag_id"]),
            run_id=str(fields["run_id"]),
            queued_at=_moment(fields.get("queued_at")),
            deadline=deadline,
            missed_at=missed_at,
            run_state=str(fields.get("run_state", "")),
        )


def missed_deadline(context: Mapping[str, Any], missed_at: datetime) -> MissedDeadline | None:
    """The record of the deadline callback's ``context``; None when the run ended before its deadline."""
    run, deadline = context["dag_run"], _moment(context["deadline"]["deadline_time"])
    if deadline is None:
        raise ValueError("the deadline callback's context has no deadline_time")
    ended = _moment(run.get("end_date"))
    if ended is not None and ended <= deadline:
        return None
    return MissedDeadline(
        dag_id=str(run["dag_id"]),
        run_id=str(run.get("dag_run_id") or run["run_id"]),
        queued_at=_moment(run.get("queued_at")),
        deadline=deadline,
        missed_at=missed_at.astimezone(UTC),
        run_state=str(run.get("state", "")),
    )


def write_missed_deadline(lake: ObjectStore, missed: MissedDeadline) -> str:
    """Write the run's record (its own key); the key."""
    lake.put(missed.key, missed.to_json())
    return missed.key


def read_missed_deadlines(lake: ObjectStore) -> list[MissedDeadline]:
    """Every missed deadline on record, oldest first; a record deleted since the listing is skipped."""
    missed = []
    for info in lake.list(MISSED_DEADLINES_PREFIX):
        try:
            missed.append(MissedDeadline.from_json(lake.get(info.key)))
        except FileNotFoundError:  # pruned meanwhile
            continue
    return sorted(missed, key=lambda record: (record.deadline, record.run_id))
