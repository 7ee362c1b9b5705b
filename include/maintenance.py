"""Airflow's own upkeep: metadata rows and task log files older than the retention, removed.

Airflow keeps every DAG run, task instance, XCom, job heartbeat and audit-log row, and every task log
file, forever. The stream alone runs a task per shard every hour and the warehouse a run per lake
flush, so both grow without end. The maintenance DAG (``dags/maintenance.py``) calls the two
functions here once a day.

``clean_metadata`` runs ``airflow db clean`` in a subprocess. Airflow 3 hides its metadata database
from task processes (the task runner points ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` at a URL that
cannot connect), so the database is named explicitly (``MAINTENANCE_DB_URL``) and given to the
subprocess alone.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from include.config import ConfigError, Settings
from include.timeutil import to_us

# The tables `airflow db clean` empties of rows older than the retention. Airflow adds the tables
# that depend on them by foreign key (a run's task instances, XComs, task states, deadlines). Tables
# this Airflow does not have are skipped with a warning: the Celery result tables under the
# LocalExecutor, FAB's sessions under the simple auth manager.
CLEANED_TABLES = (
    "dag_run",  # Airflow keeps each DAG's latest scheduled run, which the scheduler plans the next from
    "task_instance",
    "task_instance_history",
    "task_reschedule",
    "xcom",
    "job",
    "log",  # the audit log
    "asset_event",  # consumed within seconds; the lake's markers, not the events, say what a load must read
    "import_error",
    "dag_version",  # with its serialized DAG; the latest version of each DAG, and any a task instance uses, stay
    "callback",  # finished callbacks only
    "revoked_token",
    "connection_test_request",
    "celery_taskmeta",
    "celery_tasksetmeta",
    "session",
)
# Never cleaned, though `airflow db clean` knows them:
# - `dag`: a row per DAG file the dag-processor saw, with its paused state. An old `last_parsed_time`
#   means a processor that stopped, not a DAG to forget.
# - `trigger`: the lake's asset watchers run as triggers created once, when their DAG is first parsed.
#   Deleting one by age would silence `lake_trades` or `lake_gaps` (and cascade to its watcher row).
NEVER_CLEANED = ("dag", "trigger")

# Rows deleted per transaction: short transactions keep the scheduler's writes (and SQLite's one
# writer) waiting for seconds at most, however much the first run after months has to delete.
BATCH_SIZE = 5000
CLEAN_TIMEOUT_SECONDS = 3600

_CHECKED_TABLE = re.compile(r"^Checking table (?P<table>\w+)\s*\nFound (?P<rows>\d+) rows", re.MULTILINE)


class MaintenanceError(RuntimeError):
    """`airflow db clean` failed, or found no Airflow table where it was pointed."""


@dataclass(frozen=True)
class LogsRemoved:
    files: int
    folders: int
    bytes: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def cutoff(settings: Settings, now: datetime) -> datetime:
    """The moment before which metadata rows and log files are removed."""
    return now - timedelta(days=settings.maintenance_retention_days)


def metadata_db_url(settings: Settings) -> str:
    """The metadata database to clean; a missing setting is a one-line ConfigError."""
    if settings.maintenance_db_url is None:
        raise ConfigError(
            "MAINTENANCE_DB_URL is not set: Airflow hides its metadata database from tasks, so the "
            "maintenance DAG needs its URL (the value of [database] sql_alchemy_conn)"
        )
    return settings.maintenance_db_url


def clean_metadata(db_url: str, before: datetime, timeout: float = CLEAN_TIMEOUT_SECONDS) -> dict[str, int]:
    """Delete the rows of ``CLEANED_TABLES`` older than ``before`` with ``airflow db clean`` (no
    archive tables); the rows deleted per table it checked, its dependents included."""
    if before.tzinfo is None:
        raise ValueError(f"{before!r} has no time zone")
    argv = [
        *(sys.executable, "-m", "airflow", "db", "clean"),
        *("--clean-before-timestamp", before.astimezone(UTC).isoformat()),
        *("--tables", ",".join(CLEANED_TABLES), "--batch-size", str(BATCH_SIZE)),
        *("--skip-archive", "--yes", "--error-on-cleanup-failure"),
    ]
    # A task's runner blocks the database under both names; the old [core] one must not win over this.
    env = {name: value for name, value in os.environ.items() if name != "AIRFLOW__CORE__SQL_ALCHEMY_CONN"}
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = db_url
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise MaintenanceError(f"airflow db clean failed ({done.returncode}):\n{output[-4000:]}")
    deleted = {match["table"]: int(match["rows"]) for match in _CHECKED_TABLE.finditer(done.stdout)}
    if not deleted:  # e.g. a URL naming an empty database: every table "not found", and exit 0
        raise MaintenanceError(f"airflow db clean checked no table; is MAINTENANCE_DB_URL Airflow's?\n{output[-4000:]}")
    return deleted


def airflow_log_folder() -> Path:
    """Where Airflow writes task logs: its own ``[logging] base_log_folder``."""
    from airflow.configuration import conf

    return Path(conf.get("logging", "base_log_folder")).expanduser()


def remove_old_logs(folder: Path, before: datetime) -> LogsRemoved:
    """Remove every file under ``folder`` last written before ``before``, and the folders left empty.

    Task logs (``dag_id=.../run_id=.../task_id=.../attempt=N.log``) and the dag-processor's logs
    alike; a log being written has a fresh time and stays. Symbolic links are neither followed nor
    removed (the dag-processor's ``latest``). A folder goes when it is empty and either this removal
    emptied it or nothing has changed in it since ``before``; ``folder`` itself stays.
    """
    before_us = to_us(before)
    files = folders = removed_bytes = 0
    emptied: set[str] = set()
    for parent, subfolders, names in os.walk(folder, topdown=False):
        for name in names:
            path = os.path.join(parent, name)
            found = os.lstat(path)
            if stat.S_ISREG(found.st_mode) and found.st_mtime_ns // 1000 < before_us:
                os.unlink(path)
                files, removed_bytes = files + 1, removed_bytes + found.st_size
                emptied.add(parent)
        for name in subfolders:
            path = os.path.join(parent, name)
            if _remove_if_empty(path, emptied, before_us):
                folders += 1
                emptied.add(parent)
    return LogsRemoved(files=files, folders=folders, bytes=removed_bytes)


def _remove_if_empty(path: str, emptied: set[str], before_us: int) -> bool:
    """Remove the folder ``path`` if it is empty and was emptied now or is unchanged since the cutoff."""
    if os.path.islink(path) or os.listdir(path):
        return False
    if path not in emptied and os.lstat(path).st_mtime_ns // 1000 >= before_us:
        return False  # a task may have just made it, for the log it is about to write
    try:
        os.rmdir(path)
    except OSError:  # a task wrote a log into it meanwhile
        return False
    return True
