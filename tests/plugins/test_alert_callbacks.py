"""The task callbacks (plugins/alert_callbacks.py) under a real Airflow: ``airflow dags test`` runs a
probe DAG whose mapped task fails for map index 1 (retries 0, so its ``on_failure_callback`` runs), and
the failure record lands in the lake; the ``task_failed`` check opens an incident for it. The next run
succeeds: ``on_success_callback`` clears the record and the incident resolves.

And ``ClearTaskFailure`` never fails the task it runs for: with the lake unreachable it logs and returns.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from include.alerts.task_checks import TASK_FAILED
from include.alerts.task_failures import read_failures
from include.lake.keys import TASK_FAILURES_PREFIX
from include.lake.store import LocalStore
from tests.support.airflow_env import airflow_subprocess_env, migrate_db
from tests.support.net import free_port
from tests.support.processes import run_to_end
from tests.support.task_alerts import evaluate_task_incidents

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
SECRET = "s3cret-of-the-probe"
PROBE_DAG = f'''
"""The alert callbacks' probe: ``flaky`` fails for map index 1 while the file ALERT_PROBE_FAIL names exists."""

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task
from alert_callbacks import task_alert_callbacks


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["probe"],
     default_args={{"retries": 0, "owner": "cryptoflow", **task_alert_callbacks()}})
def alert_probe():
    @task
    def flaky(n: int) -> int:
        if n == 1 and Path(os.environ["ALERT_PROBE_FAIL"]).exists():
            raise RuntimeError("injected failure reaching postgresql://probe:{SECRET}@127.0.0.1:1/db")
        return n

    flaky.expand(n=[0, 1])


alert_probe()
'''


def test_an_injected_task_failure_opens_an_incident_and_its_recovery_resolves_it(tmp_path):
    migrate_db()
    dags, flag = tmp_path / "dags", tmp_path / "fail"
    dags.mkdir()
    (dags / "alert_probe.py").write_text(PROBE_DAG)
    lake = LocalStore(tmp_path / "lake")
    env = airflow_subprocess_env(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags), LAKE_URL=lake.url, DATA_DIR=str(tmp_path), ALERT_PROBE_FAIL=str(flag)
    )

    def dags_test() -> str:
        result = run_to_end([AIRFLOW, "dags", "test", "alert_probe"], env, timeout=600, cwd=tmp_path)
        return result.stdout + result.stderr

    flag.touch()
    log = dags_test()
    (failure,) = read_failures(lake)
    assert (failure.dag_id, failure.task_id, failure.map_index, failure.try_number) == ("alert_probe", "flaky", 1, 1)
    assert failure.error.startswith("RuntimeError: injected failure reaching postgresql://127.0.0.1:1"), log[-3000:]
    assert SECRET not in failure.error
    (incident,), _ = evaluate_task_incidents(tmp_path, lake)
    assert (incident.rule_id, incident.subject) == (TASK_FAILED, "alert_probe.flaky[1]")
    assert failure.run_id in incident.message

    flag.unlink()
    log = dags_test()
    assert list(lake.list(TASK_FAILURES_PREFIX)) == [], log[-3000:]
    active, resolved = evaluate_task_incidents(tmp_path, lake)
    assert active == []
    assert resolved == [incident.alert_id]


def test_clearing_never_fails_the_task_when_the_lake_is_unreachable(monkeypatch, capsys):
    from alert_callbacks import ClearTaskFailure

    # An S3 lake at a local port nothing listens on: every request is refused at once.
    monkeypatch.setenv("LAKE_URL", "s3://cryptoflow-lake/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ti = SimpleNamespace(dag_id="warehouse", task_id="load", map_index=-1, run_id="r", try_number=1)
    ClearTaskFailure()({"ti": ti})  # a context as the task runner passes it: the task instance is what it reads
    assert "could not clear the failure records of warehouse.load" in capsys.readouterr().out  # Airflow's log
