"""
### Warehouse: the lake into `raw.trades`, exactly once, seconds after each flush

Scheduled on the `lake_trades` Asset: the lake's watcher emits an event for every stream flush and
every repair, so a new micro-batch reaches the warehouse within seconds, not at the end of a
stream window. Each run loads every lake file that the load ledger does not hold yet; a file's
rows and its ledger row commit together, so a crash or a re-run neither loses nor duplicates.

The embedded default is DuckDB (`DUCKDB_PATH`), which allows one writing process per file: the
`duckdb_writer` pool has one slot, so loads never overlap. Each run logs and returns the files and
rows it loaded and any file it refused (named, with the reason).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task
from lake_assets import LAKE_TRADES

from include.config import load_settings
from include.warehouse.duckdb_backend import AIRFLOW_POOL as DUCKDB_POOL


@dag(
    schedule=[LAKE_TRADES],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cryptoflow", "warehouse", "load"],
    default_args={"retries": 3, "retry_delay": timedelta(seconds=10), "owner": "cryptoflow"},
)
def warehouse() -> None:
    @task(pool=DUCKDB_POOL)
    def load() -> dict[str, Any]:
        """Load every new lake file into raw.trades."""
        from include.lake.store import open_lake
        from include.warehouse.duckdb_backend import DuckDBWarehouse
        from include.warehouse.load import load_lake

        settings = load_settings()
        with DuckDBWarehouse(settings.duckdb_path) as target:
            result = load_lake(open_lake(settings.lake_url), target)
        print(result.summary())
        if result.refused:
            raise ValueError(f"refused files (the rest loaded): {result.refused}")
        return {"files": result.files_loaded, "rows": result.rows_loaded}

    load()


warehouse()
