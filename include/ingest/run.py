"""Run the streaming worker in the foreground: the ``stream`` command and ``make up`` use this.

SIGINT and SIGTERM stop it: the connections close, the last micro-batch is flushed, and the
process exits, all within a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from include.config import Settings
from include.ingest.stream import StreamSettings
from include.ingest.worker import DEFAULT_FLUSH_SECONDS, DEFAULT_FLUSH_TRADES, StreamWorker, WorkerSettings
from include.lake.spool import SpoolingStore
from include.lake.store import ObjectStore, open_lake

log = logging.getLogger(__name__)


def open_stream_lake(lake_url: str, spool_dir: Path, aws_conn_id: str | None = None) -> ObjectStore:
    """The lake for a streaming writer: S3 gets a local spool in front, so an outage loses nothing."""
    lake = open_lake(lake_url, aws_conn_id)
    return SpoolingStore(lake, spool_dir) if lake_url.startswith("s3://") else lake


def run_worker(
    settings: Settings,
    symbols: tuple[str, ...],
    duration: float | None = None,
    flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    flush_trades: int = DEFAULT_FLUSH_TRADES,
    silence_seconds: float = 30.0,
    spool_dir: Path = Path("data/spool"),
) -> dict[str, object]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = StreamWorker(
        WorkerSettings(
            symbols=symbols,
            stream=StreamSettings(ws_url=settings.ws_url, silence_seconds=silence_seconds),
            flush_seconds=flush_seconds,
            flush_trades=flush_trades,
        ),
        open_stream_lake(settings.lake_url, spool_dir),
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        log.info("streaming %s from %s into %s", ",".join(symbols), settings.ws_url, settings.lake_url)
        await worker.run(stop)

    asyncio.run(main())
    return worker.stats.as_dict()
