"""Run the streaming worker in the foreground: the ``stream`` command and ``make up`` use this.

SIGINT and SIGTERM stop it: the connections close, the last micro-batch is flushed, and the
process exits, all within a few seconds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal

from include.binance.client import BinanceClient
from include.config import Settings
from include.ingest.gaps import StartBoundary
from include.ingest.stream import StreamSettings
from include.ingest.worker import DEFAULT_FLUSH_SECONDS, DEFAULT_FLUSH_TRADES, StreamWorker, WorkerSettings
from include.ingest.writer import process_writer_id
from include.lake.spool import SpoolingStore
from include.lake.store import ObjectStore, open_lake

log = logging.getLogger(__name__)


def open_stream_lake(settings: Settings, writer: str, aws_conn_id: str | None = None) -> ObjectStore:
    """The lake for one streaming writer: S3 gets the writer's own spool folder in front
    (``Settings.spool_dir(writer)``), so an outage loses nothing and no two writers share a folder."""
    lake = open_lake(settings.lake_url, aws_conn_id)
    return SpoolingStore(lake, settings.spool_dir(writer)) if settings.lake_url.startswith("s3://") else lake


def close_stream_lake(lake: ObjectStore) -> None:
    """Give up the writer's spool folder: what is still spooled is drained by the next writer."""
    if isinstance(lake, SpoolingStore):
        lake.close()


def boundary_client(settings: Settings) -> BinanceClient:
    """The REST client a stream asks for its start boundaries: few tries, so an exchange that does not
    answer delays a start gap's record to the next flush, never the flush itself for long."""
    return BinanceClient(settings.rest_url, max_attempts=2, timeout_seconds=5.0)


def stream_start_boundary(client: BinanceClient, lake: ObjectStore) -> StartBoundary:
    """Where each symbol's history starts for this stream: the ledger's last complete window, else REST."""
    from include.repair.boundary import start_boundary

    return functools.partial(start_boundary, client, lake)


def run_worker(
    settings: Settings,
    symbols: tuple[str, ...],
    duration: float | None = None,
    flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    flush_trades: int = DEFAULT_FLUSH_TRADES,
    silence_seconds: float = 30.0,
    lake: ObjectStore | None = None,
) -> dict[str, object]:
    """Stream ``symbols`` into the lake until SIGINT/SIGTERM or ``duration``; the worker's counters.

    ``lake`` is where to write instead of ``LAKE_URL`` (the caller keeps it, e.g. a benchmark counting
    what the lake receives); by default the writer's own lake is opened and closed here."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    writer = process_writer_id()
    own_lake = lake is None
    lake = open_stream_lake(settings, writer) if lake is None else lake
    client = boundary_client(settings)
    worker = StreamWorker(
        WorkerSettings(
            symbols=symbols,
            stream=StreamSettings(ws_url=settings.ws_url, silence_seconds=silence_seconds),
            flush_seconds=flush_seconds,
            flush_trades=flush_trades,
        ),
        lake,
        writer,
        start_boundary=stream_start_boundary(client, lake),
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        log.info("streaming %s from %s into %s as %s", ",".join(symbols), settings.ws_url, settings.lake_url, writer)
        await worker.run(stop)

    try:
        asyncio.run(main())
    finally:
        client.close()
        if own_lake:
            close_stream_lake(lake)
    return worker.stats.as_dict()
