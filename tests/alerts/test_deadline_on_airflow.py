"""The warehouse DAG's deadline on a real Airflow: `make up`'s components (``include.up.airflow_services``:
api-server, scheduler, dag-processor, triggerer; SQLite, LocalExecutor), with the deadline shortened
to one second by its setting (``WAREHOUSE_DEADLINE_SECONDS``) so that a triggered run misses it.

The scheduler sees the miss in its loop and queues the ``SyncCallback``; the LocalExecutor runs it in a
process of its own, which writes the run's record in the lake; the ``deadline_missed`` check, evaluated
into a DuckDB file of the test's, opens an incident naming the run. Only the warehouse DAG runs (every
DAG is paused at creation and it alone unpaused), and the stack is stopped once the record is there,
in the middle of the run's load: the miss does not wait for the run.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest

from include.alerts.deadline_checks import DEADLINE_MISSED
from include.alerts.missed_deadlines import MissedDeadline, read_missed_deadlines
from include.config import load_settings
from include.lake.keys import missed_deadline_key
from include.lake.store import ObjectStore, open_lake
from include.up import airflow_services
from tests.support.airflow_api import Airflow
from tests.support.net import free_port
from tests.support.task_alerts import evaluate_task_incidents
from tests.support.up import running_services

pytestmark = pytest.mark.slow

# Liveness only: a cold start (migration, four components, the DAGs parsed) took about 100 s here.
STARTUP_SECONDS = 600
DEADLINE_SECONDS = 1
ONLY_THE_WAREHOUSE = {
    "WAREHOUSE_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
}


def unpause(airflow: Airflow, dag_id: str) -> None:
    request = urllib.request.Request(
        f"{airflow.api}/dags/{dag_id}",
        data=json.dumps({"is_paused": False}).encode(),
        headers={"Content-Type": "application/json"},
        method="PATCH",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def warehouse_parsed(airflow: Airflow) -> bool:
    errors = airflow.get("/importErrors")["import_errors"]
    assert not errors, errors
    return any(dag["dag_id"] == "warehouse" for dag in airflow.get("/dags?limit=100")["dags"])


def recorded(lake: ObjectStore, run_id: str) -> MissedDeadline | None:
    try:
        return MissedDeadline.from_json(lake.get(missed_deadline_key("warehouse", run_id)))
    except FileNotFoundError:
        return None


@pytest.mark.timeout(3 * STARTUP_SECONDS)
def test_a_warehouse_run_past_its_deadline_is_recorded_by_the_callback_and_opens_an_incident(tmp_path):
    airflow_home, data_dir = tmp_path / "airflow", tmp_path / "data"
    airflow_home.mkdir()
    settings = load_settings({"DATA_DIR": str(data_dir), "SYMBOLS": "BTCUSDT"})
    lake, api_port = open_lake(settings.lake_url), free_port()
    plan = airflow_services(settings, api_port, airflow_home, ONLY_THE_WAREHOUSE)
    airflow = Airflow(f"http://127.0.0.1:{api_port}/api/v2", *(s.log_file for s in plan if s.log_file))
    with running_services(plan, STARTUP_SECONDS):
        airflow.wait(lambda: warehouse_parsed(airflow), STARTUP_SECONDS, "the warehouse DAG parsed")
        unpause(airflow, "warehouse")
        run = airflow.post("/dags/warehouse/dagRuns", {"logical_date": None})
        record = airflow.wait(lambda: recorded(lake, run["dag_run_id"]), STARTUP_SECONDS, "the missed deadline")
        queued_at = airflow.get(f"/dags/warehouse/dagRuns/{quote(run['dag_run_id'])}")["queued_at"]

    assert record.queued_at == datetime.fromisoformat(queued_at)
    assert record.deadline == record.queued_at + timedelta(seconds=DEADLINE_SECONDS)
    assert record.missed_at >= record.deadline
    assert record.run_state in ("queued", "running")
    (incident,), _ = evaluate_task_incidents(tmp_path / "alerts", lake, (DEADLINE_MISSED,))
    assert incident.subject == "warehouse"
    # The message names the earliest late run and counts the others. Unpaused shortly after 00:30 UTC,
    # the DAG also starts its nightly reconcile, which can miss the deadline first: then ours is counted.
    late = [missed.run_id for missed in read_missed_deadlines(lake)]
    assert run["dag_run_id"] in late
    if run["dag_run_id"] not in incident.message:
        assert any(run_id in incident.message for run_id in late), (incident.message, late)
        assert f"; {len(late) - 1} later runs missed theirs too" in incident.message, (incident.message, late)
