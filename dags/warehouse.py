"""
### Warehouse: the lake into `raw.trades`, exactly once, seconds after each flush

Scheduled on the `lake_trades` Asset: the lake's watcher emits an event for every stream flush and
every repair, so a new micro-batch reaches the warehouse within seconds, not at the end of a
stream window. Each run lists only the lake partitions that the write markers name since the last
load, so its cost follows what was written, not the size of the lake.

Every night at 00:30 UTC the same DAG runs a **reconcile**: it lists the whole lake, so a file that
no marker announced (its writer crashed between the two writes) is loaded too. Trigger the DAG
with `{"full": true}` to reconcile at once.

`WAREHOUSE` picks the backend. DuckDB (`DUCKDB_PATH`, the default) commits a file's rows with its
ledger row; Snowflake runs `COPY INTO raw.trades` with explicit `FILES`, and its load history
makes a re-run a no-op. The `warehouse_writer` pool has one slot: DuckDB allows one writing process.

Each run returns the files and rows it loaded. A file that is not a trade file of the contract is
refused by name and the run fails without retrying, after the other files loaded; the refusal is
remembered, so the next run is green unless another file is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task
from lake_assets import LAKE_TRADES

from include.pools import WAREHOUSE_WRITER


@dag(
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("30 0 * * *", timezone="UTC"), assets=[LAKE_TRADES]),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    params={"full": Param(False, type="boolean", description="list the whole lake (a reconcile)")},
    tags=["cryptoflow", "warehouse", "load"],
    default_args={"retries": 3, "retry_delay": timedelta(seconds=10), "owner": "cryptoflow"},
)
def warehouse() -> None:
    @task(pool=WAREHOUSE_WRITER.name)
    def load() -> dict[str, Any]:
        """Load every new lake file into raw.trades (the whole lake on the nightly reconcile)."""
        from contextlib import closing

        from airflow.sdk.exceptions import AirflowFailException

        from include.config import ConfigError, load_settings
        from include.lake.store import open_lake
        from include.warehouse.load import load_lake, open_warehouse

        context = get_current_context()
        full = bool(context["params"]["full"]) or context["dag_run"].run_type == "scheduled"
        try:
            settings = load_settings()  # here, not at parse: a bad value fails this task, not every DAG
        except ConfigError as error:
            raise AirflowFailException(str(error)) from None  # retrying would not fix it
        with closing(open_warehouse(settings)) as target:
            result = load_lake(open_lake(settings.lake_url), target, full=full)
        print(result.summary())
        if result.refused:
            raise AirflowFailException(f"refused files (the rest loaded): {result.refused}")
        return result.as_dict()

    load()


warehouse()
