"""
### Maintenance: Airflow's metadata database and task logs, kept to a retention

Once a day at 03:00 UTC (and at once when unpaused after that hour), one run at a time, two
independent tasks remove what is older than `MAINTENANCE_RETENTION_DAYS` (default 30):

1. `clean_metadata` runs `airflow db clean --skip-archive` on DAG runs, task instances, XComs, jobs,
   the audit log, asset events, import errors, old DAG versions and a few smaller tables
   (`include/maintenance.py`, `CLEANED_TABLES`), in batches so the scheduler never waits long.
   Airflow keeps each DAG's latest scheduled run. It never touches the `dag` table (paused states)
   nor `trigger` (the lake's asset watchers run as triggers created once).
2. `remove_old_logs` removes every file under Airflow's `[logging] base_log_folder` last written
   before the cutoff (task logs and the dag-processor's), and the folders that leaves empty.

Each task logs what it removed and returns it (XCom): rows per table, and files, folders and bytes.

**Settings.** `MAINTENANCE_DB_URL` is the metadata database's URL (`[database] sql_alchemy_conn`):
Airflow 3 hides that database from task processes, so this DAG is given it explicitly (`make up` and
docker-compose.yaml set it). Missing or malformed, the task fails at once, without retries, naming
the setting.

**Run it now**: trigger the DAG (`airflow dags trigger maintenance`). **Keep more**: raise
`MAINTENANCE_RETENTION_DAYS`; what was removed is gone (no archive tables are kept).
**A failed `clean_metadata`**: its log shows `airflow db clean`'s output and the table it failed on;
a locked SQLite database under `make up` passes with the retry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable
from alert_callbacks import task_alert_callbacks

from include.config import ConfigError, Settings, load_settings


def _settings() -> Settings:
    """The settings, or a failure without retries: a retry would not fix a bad value."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return load_settings()
    except ConfigError as error:
        raise AirflowFailException(str(error)) from None


@dag(
    schedule=CronTriggerTimetable("0 3 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cryptoflow", "maintenance"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10), "owner": "cryptoflow", **task_alert_callbacks()},
)
def maintenance() -> None:
    @task(execution_timeout=timedelta(hours=2))
    def clean_metadata() -> dict[str, int]:
        """Delete Airflow's metadata rows older than the retention with `airflow db clean`."""
        from airflow.sdk.exceptions import AirflowFailException

        from include import maintenance as upkeep
        from include.timeutil import from_us, now_us

        settings = _settings()
        try:
            db_url = upkeep.metadata_db_url(settings)
        except ConfigError as error:
            raise AirflowFailException(str(error)) from None
        before = upkeep.cutoff(settings, from_us(now_us()))
        deleted = upkeep.clean_metadata(db_url, before)
        print(f"metadata rows older than {before.isoformat()} deleted, per table: {deleted}")
        return deleted

    @task(execution_timeout=timedelta(hours=1))
    def remove_old_logs() -> dict[str, int]:
        """Remove Airflow's log files last written before the retention, and the folders left empty."""
        from include import maintenance as upkeep
        from include.timeutil import from_us, now_us

        before = upkeep.cutoff(_settings(), from_us(now_us()))
        folder = upkeep.airflow_log_folder()
        removed = upkeep.remove_old_logs(folder, before)
        print(f"log files in {folder} last written before {before.isoformat()} removed: {removed}")
        return removed.as_dict()

    clean_metadata()
    remove_old_logs()


maintenance()
