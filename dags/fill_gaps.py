"""
### Fill gaps: the trades the stream missed, fetched seconds after it saw them

The stream writer sees every gap the moment the trade after it arrives (trade ids are consecutive
per symbol): ids skipped inside a connection, lost across a reconnect, missed while the stream was
restarting, or before its first trade. It records each gap in the lake (`status/gaps/...`) and names
it in its gap marker (`status/gap_writes/<writer>.json`); the `lake_gaps` Asset's watcher turns
that into an asset event, which runs this DAG (one run at a time; events that arrive meanwhile
start the next run).

1. `pending_symbols` lists the gaps of the last two days that no fill has completed
   (`status/gap_fills/...` with `missing` 0), and maps one `fill` task per symbol that has any.
2. `fill` looks in the lake first (ids already there are never fetched again), fetches exactly the
   rest from `historicalTrades` in the `exchange_rest` pool, within Binance's weight budget and in
   chunks (a restart after an hour pages through), writes them as `backfill-<first>-<last>.parquet`
   files, and records each gap's fill: filled, exchange-side holes (recorded, never asked for
   again), still missing. The backfill files are announced by the fill's write marker, so the
   warehouse DAG loads them like any micro-batch.

**A fill that stays incomplete** (REST's history lags behind the stream for a moment, or rows the
trade contract refuses) fails the task after recording what it did; its retries, and every later
run, fetch what is still missing. Look at the fill record's `missing` and `refused`.

**By hand**: `python -m include.cli fill-gaps` runs one pass without Airflow (`--follow 5` keeps
filling every 5 s until Ctrl-C). The hourly `repair_gaps` DAG stays the verifier of every window.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task
from alert_callbacks import task_alert_callbacks
from lake_assets import LAKE_GAPS

from include.pools import EXCHANGE_REST


@dag(
    schedule=[LAKE_GAPS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cryptoflow", "repair", "live"],
    default_args={"retries": 5, "retry_delay": timedelta(seconds=10), "owner": "cryptoflow", **task_alert_callbacks()},
)
def fill_gaps() -> None:
    @task
    def pending_symbols() -> list[str]:
        """The symbols with a gap that no fill has completed yet."""
        from include.config import load_settings
        from include.lake.store import open_lake
        from include.repair.live import pending_gaps

        pending = pending_gaps(open_lake(load_settings().lake_url))
        print(f"{len(pending)} pending gaps: {[(p.gap.symbol, p.gap.first_id, p.gap.last_id) for p in pending[:20]]}")
        return sorted({p.gap.symbol for p in pending})

    # No outlet: the fill's write marker announces its files, as every writer's does, and the
    # lake_trades watcher turns that into the warehouse's run.
    @task(pool=EXCHANGE_REST.name, map_index_template="{{ task.op_kwargs['symbol'] }}")
    def fill(symbol: str, dag_run: Any = None) -> dict[str, object]:
        """Fetch and write the missing ids of one symbol's pending gaps; record each fill."""
        from include.binance.client import BinanceClient
        from include.config import load_settings
        from include.ingest.writer import writer_id
        from include.lake.store import open_lake
        from include.repair.live import FillIncomplete, fill_pending

        settings = load_settings()
        # One writer per symbol for this DAG: runs never overlap (max_active_runs=1), so each run
        # carries on the same write marker instead of leaving one per run behind.
        writer = writer_id("fill", dag_run.dag_id if dag_run else "fill_gaps", symbol)
        with BinanceClient(settings.rest_url) as client:
            summary = fill_pending(client, open_lake(settings.lake_url), writer, {symbol})
        print(summary.as_dict())
        if summary.incomplete:
            raise FillIncomplete(f"{symbol}: {summary.incomplete} gaps still miss {summary.missing} ids")
        return summary.as_dict()

    fill.expand(symbol=pending_symbols())


fill_gaps()
