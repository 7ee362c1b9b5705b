"""Airflow's upkeep (include/maintenance.py): old metadata rows and log files go, recent ones stay.

The metadata test cleans a real Airflow database: a copy of the test session's migrated SQLite
database, with old and recent rows written through Airflow's own tables. It runs ``clean_metadata``
as the maintenance DAG's task runs it: in a process where Airflow's task runner has blocked the
metadata database (``block_orm_access``), so only ``MAINTENANCE_DB_URL`` can reach it.
"""

from __future__ import annotations

import tests.support.airflow_env  # noqa: F401  (configures Airflow before anything imports it)

# isort: split

import json
import os
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from include.config import ConfigError, load_settings
from include.maintenance import (
    CLEANED_TABLES,
    NEVER_CLEANED,
    LogsRemoved,
    MaintenanceError,
    airflow_log_folder,
    clean_metadata,
    cutoff,
    metadata_db_url,
    remove_old_logs,
)
from tests.support.airflow_env import AIRFLOW_HOME, airflow_subprocess_env, migrate_db
from tests.support.paths import REPO_ROOT
from tests.support.processes import run_to_end

NOW = datetime.now(UTC)
RETENTION = timedelta(days=30)
OLD, RECENT = NOW - timedelta(days=40), NOW - timedelta(days=1)

# As the maintenance task runs it: Airflow's task runner has blocked the metadata database first.
CLEAN_IN_A_TASK_PROCESS = """
import json, sys
from datetime import datetime
import airflow.settings
from airflow.sdk.execution_time.supervisor import block_orm_access
block_orm_access()
from include.maintenance import clean_metadata
print(json.dumps(clean_metadata(sys.argv[1], datetime.fromisoformat(sys.argv[2]))))
"""


def private_copy_of_the_metadata_db(folder: Path) -> str:
    """The test session's migrated metadata database, copied: this test deletes from its own."""
    migrate_db()
    copy = folder / "airflow.db"
    with sqlite3.connect(AIRFLOW_HOME / "airflow.db") as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return f"sqlite:///{copy}"


def write_run(connection: sa.Connection, dag_id: str, run_id: str, started: datetime) -> None:
    """A finished scheduled run with one task instance and its XCom, all started at ``started``."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    run = {"dag_id": dag_id, "run_id": run_id}
    inserted = connection.execute(
        sa.insert(DagRun.__table__).values(
            **run, run_type="scheduled", state="success", start_date=started, run_after=started, logical_date=started
        )
    )
    instance = {**run, "task_id": "work", "map_index": -1}
    connection.execute(
        sa.insert(TaskInstance.__table__).values(
            **instance, start_date=started, try_number=1, pool="default_pool", pool_slots=1, state="success"
        )
    )
    connection.execute(
        sa.insert(XComModel.__table__).values(
            **instance, dag_run_id=inserted.inserted_primary_key[0], key="return_value", value="1", timestamp=started
        )
    )


def write_rows(db_url: str) -> None:
    from airflow.jobs.job import Job
    from airflow.models.log import Log

    with sa.create_engine(db_url).begin() as connection:
        write_run(connection, "busy", "old", OLD)
        write_run(connection, "busy", "recent", RECENT)
        write_run(connection, "idle", "old", OLD)  # the idle DAG's latest run: the scheduler plans from it
        for name, moment in (("old", OLD), ("recent", RECENT)):
            connection.execute(sa.insert(Job.__table__).values(job_type=f"{name}Job", latest_heartbeat=moment))
            connection.execute(sa.insert(Log.__table__).values(event=f"{name}_event", dttm=moment))


def remaining(db_url: str) -> dict[str, list[tuple]]:
    """This test's rows that are left: the copied database also holds what other tests of the session
    ran (`airflow dags test` runs, recent), which are not this test's to count."""
    ours = "dag_id in ('busy', 'idle')"
    queries = {
        "dag_run": f"select dag_id, run_id from dag_run where {ours}",
        "task_instance": f"select dag_id, run_id from task_instance where {ours}",
        "xcom": f"select dag_id, run_id from xcom where {ours}",
        "job": "select job_type from job where job_type in ('oldJob', 'recentJob')",
        "log": "select event from log where event like '%_event'",  # not db clean's own audit row
        "archives": "select name from sqlite_master where name like '_airflow_deleted__%'",
    }
    with sa.create_engine(db_url).connect() as connection:
        return {name: sorted(tuple(row) for row in connection.execute(sa.text(sql))) for name, sql in queries.items()}


def test_clean_metadata_deletes_the_old_rows_and_keeps_the_recent_ones_from_a_task_process(tmp_path):
    db_url = private_copy_of_the_metadata_db(tmp_path)
    write_rows(db_url)
    argv = [sys.executable, "-c", CLEAN_IN_A_TASK_PROCESS, db_url, (NOW - RETENTION).isoformat()]
    done = run_to_end(argv, airflow_subprocess_env(), timeout=180, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    deleted = json.loads(done.stdout.strip().splitlines()[-1])
    # At least this test's old rows (other tests' rows in the copy are recent, but need not all be).
    ours = {"dag_run": 1, "task_instance": 2, "xcom": 2, "job": 1, "log": 1}  # task_instance: the idle run's too
    assert {table: deleted[table] >= count for table, count in ours.items()} == dict.fromkeys(ours, True), deleted
    assert remaining(db_url) == {
        "dag_run": [("busy", "recent"), ("idle", "old")],
        "task_instance": [("busy", "recent")],
        "xcom": [("busy", "recent")],
        "job": [("recentJob",)],
        "log": [("recent_event",)],
        "archives": [],  # --skip-archive: the deleted rows are not kept in archive tables
    }


def test_a_url_that_is_not_airflows_database_fails_rather_than_cleaning_nothing(tmp_path):
    """``airflow db clean`` skips every table it does not find and exits 0: a wrong URL must not look clean."""
    with pytest.raises(MaintenanceError, match="checked no table"):
        clean_metadata(f"sqlite:///{tmp_path / 'not-airflow.db'}", NOW - RETENTION)


def test_the_metadata_db_url_is_required_and_never_shown():
    with pytest.raises(ConfigError) as missing:
        metadata_db_url(load_settings({}))
    assert "MAINTENANCE_DB_URL" in str(missing.value)
    assert "\n" not in str(missing.value)
    secret = "postgres:/airflow:hunter2@db/airflow"  # one slash short
    with pytest.raises(ConfigError) as malformed:
        load_settings({"MAINTENANCE_DB_URL": secret})
    assert "MAINTENANCE_DB_URL" in str(malformed.value)
    assert "hunter2" not in str(malformed.value)
    url = "postgresql+psycopg2://airflow:hunter2@db/airflow"
    settings = load_settings({"MAINTENANCE_DB_URL": url})
    assert metadata_db_url(settings) == url
    assert "hunter2" not in repr(settings)
    # make up's SQLite URL is the checkout's path, which may hold a space
    spaced = "sqlite:////home/ana/My Projects/cryptoflow/.airflow/airflow.db"
    assert metadata_db_url(load_settings({"MAINTENANCE_DB_URL": spaced})) == spaced


def test_the_cleaned_tables_are_ones_airflow_cleans_and_leave_the_dags_and_the_asset_watchers():
    from airflow.utils.db_cleanup import config_dict

    known = set(config_dict) | {"session"}  # FAB's sessions: known with the FAB auth manager only
    assert set(CLEANED_TABLES) <= known
    assert set(NEVER_CLEANED) <= known
    assert not set(NEVER_CLEANED) & set(CLEANED_TABLES)
    dependents = {
        dependent
        for name in set(CLEANED_TABLES) & set(config_dict)
        for dependent in config_dict[name].dependent_tables or []
    }
    assert not set(NEVER_CLEANED) & dependents  # nor cleaned as another table's dependent


def test_the_cutoff_is_the_retention_before_now():
    assert cutoff(load_settings({"MAINTENANCE_RETENTION_DAYS": "7"}), NOW) == NOW - timedelta(days=7)
    assert cutoff(load_settings({}), NOW) == NOW - RETENTION


# Log files -----------------------------------------------------------------------------------------


def write_log(path: Path, written: datetime, text: str = "a log line\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    age_ns = int(written.timestamp()) * 1_000_000_000
    os.utime(path, ns=(age_ns, age_ns))
    return path


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file() or path.is_symlink()}


def test_remove_old_logs_removes_old_files_and_the_folders_they_leave_empty_and_keeps_the_rest(tmp_path):
    logs = tmp_path / "logs"
    old_run = logs / "dag_id=stream_trades" / "run_id=old"
    write_log(old_run / "task_id=stream" / "map_index=0" / "attempt=1.log", OLD, "x" * 100)
    write_log(old_run / "task_id=stream" / "map_index=1" / "attempt=1.log", OLD, "y" * 50)
    retried = logs / "dag_id=warehouse" / "run_id=retried" / "task_id=load"
    write_log(retried / "attempt=1.log", OLD, "z" * 10)
    write_log(retried / "attempt=2.log", RECENT)
    write_log(logs / "dag_id=warehouse" / "run_id=recent" / "task_id=load" / "attempt=1.log", RECENT)
    processor_day = logs / "dag_processor" / "2026-10-01" / "dags-folder"
    write_log(processor_day / "warehouse.py.log", OLD, "p" * 5)
    (logs / "dag_processor" / "latest").symlink_to(processor_day.parent, target_is_directory=True)
    just_made = logs / "dag_id=warehouse" / "run_id=starting" / "task_id=load"
    just_made.mkdir(parents=True)  # a task is about to write its log here

    removed = remove_old_logs(logs, NOW - RETENTION)

    assert files_under(logs) == {
        "dag_id=warehouse/run_id=retried/task_id=load/attempt=2.log",
        "dag_id=warehouse/run_id=recent/task_id=load/attempt=1.log",
        "dag_processor/latest",  # a link: left for the dag-processor to point elsewhere
    }
    assert just_made.is_dir()
    assert not (logs / "dag_id=stream_trades").exists()
    assert not (logs / "dag_processor" / "2026-10-01").exists()
    # stream_trades' run: 2 map_index folders, the task's, the run's, the DAG's; the processor's 2
    assert removed == LogsRemoved(files=4, folders=7, bytes=165)
    assert remove_old_logs(logs, NOW - RETENTION) == LogsRemoved(files=0, folders=0, bytes=0)


def test_a_folder_nothing_changed_in_for_the_retention_goes_if_empty(tmp_path):
    logs = tmp_path / "logs"
    abandoned = logs / "dag_id=gone" / "run_id=old"
    abandoned.mkdir(parents=True)
    age_ns = int(OLD.timestamp()) * 1_000_000_000
    os.utime(abandoned, ns=(age_ns, age_ns))
    assert remove_old_logs(logs, NOW - RETENTION) == LogsRemoved(files=0, folders=2, bytes=0)
    assert list(logs.iterdir()) == []


def test_the_log_folder_is_airflows_base_log_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(tmp_path / "elsewhere"))
    assert airflow_log_folder() == tmp_path / "elsewhere"
