"""The ``deadline_missed`` check (include/alerts/deadline_checks.py) on missed-deadline records in a real
lake folder, evaluated into a real DuckDB warehouse: one incident per DAG while it has records not
done, done once trades loaded after the miss are in ``marts.candles_1m`` (a build alone is not enough:
the late run's own build comes after its deadline), and pruned once done and older than LOOKBACK.

The records are made as the deadline callback makes them, from a context shaped as Airflow 3.3.2's
``Deadline.handle_miss`` builds it (the run as the REST API dumps it, the deadline as a datetime).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

from include.alerts.checks import LOOKBACK
from include.alerts.deadline_checks import DEADLINE_MISSED
from include.alerts.missed_deadlines import MissedDeadline, missed_deadline, read_missed_deadlines
from include.alerts.missed_deadlines import write_missed_deadline as write
from include.lake.keys import missed_deadline_key
from include.lake.store import LocalStore
from include.warehouse.duckdb_backend import DuckDBWarehouse
from tests.support.task_alerts import evaluate_task_incidents
from tests.support.warehouse import create_candle_marts

NOW = datetime.now(UTC).replace(microsecond=0)
DEADLINE = timedelta(minutes=10)


@pytest.fixture
def lake(tmp_path):
    return LocalStore(tmp_path / "lake")


@pytest.fixture
def evaluate(tmp_path, lake):
    return functools.partial(evaluate_task_incidents, tmp_path, lake, (DEADLINE_MISSED,))


def _context(run_id: str, queued_at: datetime, end_date: datetime | None = None, state: str = "running") -> dict:
    run = {
        "dag_run_id": run_id,
        "dag_id": "warehouse",
        "queued_at": queued_at.isoformat(),
        "end_date": end_date.isoformat() if end_date else None,
        "state": state,
    }
    return {"dag_run": run, "deadline": {"id": "0190", "deadline_time": queued_at + DEADLINE}}


def _missed(run_id: str, minutes_ago: float) -> MissedDeadline:
    """A run whose deadline passed ``minutes_ago`` (and the miss was seen 5 s later)."""
    deadline = NOW - timedelta(minutes=minutes_ago)
    record = missed_deadline(_context(run_id, deadline - DEADLINE), deadline + timedelta(seconds=5))
    assert record is not None
    return record


def _candles(folder, *, loaded: datetime, built: datetime) -> None:
    """marts.candles_1m with one closed minute of BTCUSDT, its trades loaded at ``loaded``."""
    with DuckDBWarehouse(folder / "warehouse.duckdb") as warehouse:
        create_candle_marts(warehouse)
        warehouse.execute("delete from marts.candles_1m")
        warehouse.execute(
            "insert into marts.candles_1m (symbol, open_time, close_time, volume, is_closed, is_complete, "
            "last_loaded_at, built_at) values ('BTCUSDT', ?, ?, 1, true, true, ?, ?)",
            [NOW - timedelta(minutes=3), NOW - timedelta(minutes=2, milliseconds=1), loaded, built],
        )


def test_a_late_warehouse_is_one_incident_until_trades_loaded_after_the_miss_are_built(tmp_path, lake, evaluate):
    first = _missed("asset_triggered__1", minutes_ago=30)
    write(lake, first)
    (opened,), _ = evaluate()
    assert (opened.rule_id, opened.subject) == (DEADLINE_MISSED, "warehouse")
    assert "asset_triggered__1" in opened.message
    assert "10 minutes allowed" in opened.message

    # The late run's own build finishes after its deadline, from trades loaded before it: still late.
    _candles(tmp_path, loaded=first.missed_at - timedelta(minutes=1), built=first.missed_at + timedelta(minutes=5))
    (kept,), resolved = evaluate()
    assert kept.alert_id == opened.alert_id
    assert resolved == []

    # A later run missed its deadline too: the same incident (stored once, with its first message).
    write(lake, _missed("asset_triggered__2", minutes_ago=20))
    (kept,), _ = evaluate()
    assert kept.alert_id == opened.alert_id

    # The next run loaded trades after the last miss and built them: on time again.
    _candles(tmp_path, loaded=NOW - timedelta(minutes=1), built=NOW - timedelta(seconds=30))
    still, resolved = evaluate()
    assert still == []
    assert resolved == [opened.alert_id]
    assert len(read_missed_deadlines(lake)) == 2, "the check deletes no record younger than LOOKBACK"


def test_late_again_after_catching_up_is_a_new_incident(tmp_path, lake, evaluate):
    write(lake, _missed("asset_triggered__1", minutes_ago=30))
    (first,), _ = evaluate()
    _candles(tmp_path, loaded=NOW - timedelta(minutes=25), built=NOW - timedelta(minutes=24))
    assert evaluate() == ([], [first.alert_id])
    write(lake, _missed("asset_triggered__2", minutes_ago=5))
    (second,), _ = evaluate()
    assert second.alert_id != first.alert_id
    assert "asset_triggered__2" in second.message


def test_done_records_older_than_the_lookback_are_pruned_and_open_ones_kept(tmp_path, lake, evaluate):
    old_done = _missed("scheduled__old", minutes_ago=LOOKBACK.total_seconds() / 60 + 60)
    write(lake, old_done)
    _candles(tmp_path, loaded=NOW - timedelta(minutes=1), built=NOW)
    assert evaluate()[0] == []
    assert read_missed_deadlines(lake) == []

    # No load since a miss of three days ago (a warehouse stuck that long): still open, kept.
    stuck = _missed("scheduled__stuck", minutes_ago=LOOKBACK.total_seconds() / 60 + 24 * 60)
    write(lake, stuck)
    _candles(tmp_path, loaded=stuck.missed_at - timedelta(minutes=1), built=stuck.missed_at)
    (opened,), _ = evaluate()
    assert "scheduled__stuck" in opened.message
    assert read_missed_deadlines(lake) == [stuck]


def test_a_run_that_failed_before_its_deadline_missed_none():
    """Airflow prunes a deadline only when its run succeeds: the callback still runs for a failed run."""
    queued = NOW - timedelta(minutes=15)
    failed = _context("manual__1", queued, end_date=queued + timedelta(minutes=2), state="failed")
    assert missed_deadline(failed, NOW) is None
    late = _context("manual__2", queued, end_date=queued + DEADLINE + timedelta(seconds=1), state="success")
    assert missed_deadline(late, NOW) is not None


def test_the_record_keeps_the_run_the_deadline_and_the_miss():
    queued = datetime(2026, 11, 24, 13, 0, 0, tzinfo=UTC)
    context = _context("manual__2026-11-24T13:00:00+00:00", queued)
    record = missed_deadline(context, datetime(2026, 11, 24, 13, 10, 3, tzinfo=UTC))
    assert record is not None
    assert record.key == missed_deadline_key("warehouse", "manual__2026-11-24T13:00:00+00:00")
    assert record.key == "alerts/deadlines/dag=warehouse/manual__2026-11-24T13_00_00_00_00.json"
    assert (record.queued_at, record.deadline) == (queued, queued + DEADLINE)
    assert record.run_state == "running"
    assert MissedDeadline.from_json(record.to_json()) == record
