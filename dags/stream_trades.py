"""
### Stream trades into the lake

One run per stream window (an hour by default, starting at the window's start). Each run maps one
`TradeStreamSensor` per shard of `SYMBOLS`; the sensor keeps its WebSocket connections open for
the whole window and flushes a Parquet micro-batch into the lake on every poke.

- **Windows overlap** by `overlap_minutes`: the next run connects before this one disconnects, so
  the handover loses nothing (duplicate ids from the overlap are dropped by the batcher, and by id
  in the warehouse).
- **Every flush is announced as it lands**: writers leave a marker in the lake and the
  `lake_trades` Asset's watcher turns it into an asset event within seconds (see
  `plugins/lake_assets.py`), so the warehouse DAG does not wait for the window to end.
- **A crashed stream is back in seconds**: retries with a 5-second delay. Whatever an outage
  missed is found by trade id and filled by the `repair_gaps` DAG.
- Watch it in the task logs: every poke logs trades, quarantined, duplicates, reconnects and lag.
  Each writer's heartbeat (every symbol's last trade, lag and connection) is in the lake under
  `status/stream/`, one object per writer.

Trigger it by hand with `{"window_minutes": 5}` for a short stream.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from airflow.timetables.trigger import CronTriggerTimetable
from alert_callbacks import task_alert_callbacks
from lake_assets import LAKE_TRADES
from trade_stream_sensor import TradeStreamSensor

from include.config import load_settings


@dag(
    # The run for the current window starts as soon as the DAG is unpaused, not at the next hour.
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC", run_immediately=True),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=2,  # a window and the next one overlap
    doc_md=__doc__,
    tags=["cryptoflow", "ingest", "stream"],
    default_args={"retries": 20, "retry_delay": timedelta(seconds=5), "owner": "cryptoflow", **task_alert_callbacks()},
    params={
        "window_minutes": Param(60, type="number", minimum=0.05, description="length of the stream window"),
        "overlap_minutes": Param(2, type="number", minimum=0, description="overlap with the next window"),
    },
)
def stream_trades() -> None:
    @task
    def plan_shards() -> list[str]:
        """Split SYMBOLS into shards, one mapped stream task each."""
        settings = load_settings()
        symbols, size = settings.symbols, settings.stream_shard_size
        return [",".join(symbols[i : i + size]) for i in range(0, len(symbols), size)]

    TradeStreamSensor.partial(
        task_id="stream",
        window_end="{{ (logical_date + macros.timedelta(minutes=params.window_minutes "
        "+ params.overlap_minutes)).isoformat() }}",
        flush_seconds=5.0,
        timeout=6 * 3600,
        outlets=[LAKE_TRADES],
    ).expand(symbols=plan_shards())


stream_trades()
