"""
### Repair gaps: every trade of every window, exactly once

One run per hour-long window, once the window has closed plus a grace delay (`grace_minutes`),
with one mapped task per symbol.

First, `split` turns the stream's batches (one object per writer and flush, every symbol of its
shard) of every hour up to the window's end into one file per symbol-hour,
`split-<first>-<last>.parquet` (include/lake/split.py); the load inserts only the ids it lacks.
Then each `repair` task:

1. asks Binance (aggTrades `startTime`, `limit=1`) for the window's expected trade-id range:
   the first trade at or after its start, up to the first at or after its end;
2. reads the ids the lake holds for the window, from split, backfill and compacted files and from
   stream batches not split yet alike;
3. fetches exactly the missing ids from `historicalTrades`, within the REST weight budget, and
   writes them as `backfill-<first>-<last>.parquet`;
4. records the result per symbol and window in the lake (`status/completeness/...`): expected,
   present, filled, exchange-side holes (ids REST skips over: recorded, never asked for again),
   and what is still missing. Ids REST has not served yet (its history lags) and rows the trade
   contract refuses (checked by the stream's own rules; listed in the report with the reason)
   stay missing: the task fails and its retry, or the next run, fetches them again.

The summary is the task's log line and its return value (XCom).

5. `compact`, per symbol, once its `repair` is done: a window the repair verified complete (nothing
   missing, a whole clock hour) has its files (the split's, the fills') rewritten as one,
   `compact-<first>-<last>.parquet`, after checking they hold exactly the verified ids; the load
   inserts only the ids the warehouse does not hold yet. A window still incomplete, or holding a
   stream batch that came after the split, is skipped, and
   compacted once a re-run of its `repair` completes it: clear `repair` *with its downstream*.

**Re-backfill a window**: clear the `repair` task instance of that run (one symbol, or all) in the
Airflow UI. It re-checks the window and fetches whatever is missing; a window that is complete
changes nothing.

**Import history**: run a backfill of this DAG over past dates (the UI's *Backfill* or
`airflow backfill create --dag-id repair_gaps --from-date ... --to-date ...`). A window that was never
streamed is one large gap and is imported the same way.

REST calls of all tasks go through the `exchange_rest` pool, and every request is budgeted from
Binance's `X-MBX-USED-WEIGHT-1M`, so concurrent tasks never earn a 429, let alone a 418.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.sensors.date_time import DateTimeSensor
from airflow.sdk import Param, TriggerRule, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable
from alert_callbacks import task_alert_callbacks
from lake_assets import LAKE_TRADES

from include.config import load_settings
from include.pools import EXCHANGE_REST


@dag(
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["cryptoflow", "repair", "backfill"],
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1), "owner": "cryptoflow", **task_alert_callbacks()},
    params={"grace_minutes": Param(5, type="number", minimum=0, description="wait after the window closes")},
)
def repair_gaps() -> None:
    grace = DateTimeSensor(
        task_id="wait_for_window_to_close",
        target_time="{{ (data_interval_end + macros.timedelta(minutes=params.grace_minutes)).isoformat() }}",
        mode="reschedule",
        poke_interval=30,
    )

    @task
    def symbols() -> list[str]:
        return list(load_settings().symbols)

    @task(pool=EXCHANGE_REST.name, outlets=[LAKE_TRADES], map_index_template="{{ task.op_kwargs['symbol'] }}")
    def repair(symbol: str, data_interval_start: Any = None, data_interval_end: Any = None) -> dict[str, Any]:
        """Check one symbol's window and fill what is missing."""
        from dataclasses import asdict

        from include.binance.client import BinanceClient
        from include.lake.store import open_lake
        from include.repair.repair import repair_window

        settings = load_settings()
        with BinanceClient(settings.rest_url) as client:
            report = repair_window(client, open_lake(settings.lake_url), symbol, data_interval_start, data_interval_end)
        return asdict(report) | {"files": len(report.files)}

    @task(
        outlets=[LAKE_TRADES],
        trigger_rule=TriggerRule.ALL_DONE,
        map_index_template="{{ task.op_kwargs['symbol'] }}",
    )
    def compact(symbol: str, data_interval_start: Any = None, data_interval_end: Any = None) -> str:
        """Compact one symbol's window into one file, if the repair verified it complete."""
        from airflow.sdk.exceptions import AirflowSkipException

        from include.lake.store import open_lake
        from include.repair.compact import NotRepaired, compact_window

        lake = open_lake(load_settings().lake_url)
        try:
            return compact_window(lake, symbol, data_interval_start, data_interval_end).summary()
        except NotRepaired as reason:
            raise AirflowSkipException(str(reason)) from reason

    @task(outlets=[LAKE_TRADES], max_active_tis_per_dag=1)  # one split at a time: runs overlap (max_active_runs)
    def split(data_interval_end: Any = None) -> str:
        """Split the stream batches of every hour before the window's end into files per symbol-hour."""
        from include.lake.split import split_batches
        from include.lake.store import open_lake
        from include.timeutil import to_us

        return split_batches(open_lake(load_settings().lake_url), to_us(data_interval_end)).summary()

    names = symbols()
    grace >> split() >> repair.expand(symbol=names) >> compact.expand(symbol=names)


repair_gaps()
