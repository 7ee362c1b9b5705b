"""``deadline_missed``: a DAG whose runs missed their deadline (Airflow's ``DeadlineAlert``), one incident
per DAG, read from the records the deadline callback keeps in the lake (include/alerts/missed_deadlines.py).

When is a DAG on time again? Airflow has no signal for it: a run that finishes in time only has its
deadline row pruned. So the check asks the data. A record is **done** once the warehouse shows work
that started after the miss: ``marts.candles_1m``'s newest ``last_loaded_at`` (when its newest trades
were loaded) is later than the record's ``missed_at``, i.e. trades loaded after the deadline was
missed are in the marts. Not ``built_at``: a run late because its own build was slow or stuck builds
after its deadline, and that build would clear the incident before any evaluation saw it (the alerts
task shares the writer pool with the build it waits for). A late run had loaded before its deadline,
so its own build does not clear it; the next run's load does. A run whose load itself was still
running at the miss is the exception: its own build clears it, and the incident is seen only if an
evaluation came in between.

An incident is open while a DAG has records not done; its id is the check, the DAG and the oldest such
record's run; the evaluation keeps one incident per check and subject, so runs late one after another
are one incident, and a DAG late again after an evaluation saw it caught up is a new one. The
check deletes nothing that is still an incident: done records older than ``LOOKBACK`` are pruned here.
A DAG with no evidence of its own (every DAG but ``warehouse`` today) keeps its records open until they
are older than ``LOOKBACK``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from include.alerts.checks import LOOKBACK, CheckInput, PipelineCheck
from include.alerts.health_checks import relations
from include.alerts.missed_deadlines import MissedDeadline, read_missed_deadlines
from include.alerts.model import PIPELINE, Alert, alert_id

DEADLINE_MISSED = "deadline_missed"
WAREHOUSE_DAG = "warehouse"

CaughtUp = Callable[[CheckInput], datetime | None]
"""When a DAG's newest work started, as its data shows: a record missed before that is done."""


def newest_mart_load(check: CheckInput) -> datetime | None:
    """The newest load time of a trade the 1m candles hold (of the last LOOKBACK); None before a build."""
    if "candles_1m" not in relations(check, "marts"):
        return None
    p, ts = check.dialect.placeholder, check.dialect.timestamp_type
    rows = check.execute(
        f"select max(last_loaded_at) from marts.candles_1m where close_time >= cast({p} as {ts})",
        [(check.now - LOOKBACK).isoformat()],
    )
    newest = rows[0][0] if rows else None
    if newest is None:
        return None
    return newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest.astimezone(UTC)


CAUGHT_UP: dict[str, CaughtUp] = {WAREHOUSE_DAG: newest_mart_load}


def _done(record: MissedDeadline, caught_up: datetime | None, now: datetime) -> bool:
    if record.dag_id not in CAUGHT_UP:
        return now - record.missed_at > LOOKBACK
    return caught_up is not None and caught_up > record.missed_at


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:g} minutes"


def _message(records: list[MissedDeadline]) -> str:
    first = records[0]
    queued = f"queued at {first.queued_at:%Y-%m-%d %H:%M:%S} UTC, " if first.queued_at else ""
    allowed = f" ({_minutes(first.deadline - first.queued_at)} allowed)" if first.queued_at else ""
    later = f"; {len(records) - 1} later runs missed theirs too" if len(records) > 1 else ""
    return (
        f"{first.dag_id} is late: run {first.run_id} ({queued}{first.run_state}) had not finished by its deadline "
        f"{first.deadline:%Y-%m-%d %H:%M:%S} UTC{allowed}{later}"
    )


def _prune(check: CheckInput, done: list[MissedDeadline]) -> None:
    """Delete the done records older than LOOKBACK: the folder stays small, and nothing open goes."""
    for record in done:
        if check.now - record.missed_at > LOOKBACK:
            check.lake.delete(record.key)


def deadline_missed(check: CheckInput) -> list[Alert]:
    """One incident per DAG with missed deadlines not done (see the module's docstring)."""
    records = read_missed_deadlines(check.lake)
    caught_up = {dag: CAUGHT_UP[dag](check) for dag in {record.dag_id for record in records} if dag in CAUGHT_UP}
    open_by_dag: dict[str, list[MissedDeadline]] = {}
    done = []
    for record in records:  # oldest first
        if _done(record, caught_up.get(record.dag_id), check.now):
            done.append(record)
        else:
            open_by_dag.setdefault(record.dag_id, []).append(record)
    _prune(check, done)
    return [
        Alert(
            alert_id=alert_id(DEADLINE_MISSED, dag, mine[0].run_id),
            kind=PIPELINE,
            rule_id=DEADLINE_MISSED,
            subject=dag,
            message=_message(mine),
            event_time=mine[0].deadline,
        )
        for dag, mine in sorted(open_by_dag.items())
    ]


DEADLINE_CHECKS: dict[str, PipelineCheck] = {DEADLINE_MISSED: deadline_missed}
