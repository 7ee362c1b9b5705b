"""``TradeStreamSensor``: a poke-mode sensor that *is* the streaming worker for one symbol shard.

On its first poke it opens the WebSocket connections on a background thread; they live across
pokes for the whole window. Every poke flushes a micro-batch into the lake and logs its counts
(trades, lag, reconnects, quarantined). The sensor is done once its window has ended: it then
closes the connections and flushes the rest. A crash fails the task and Airflow's retries restart
the stream within seconds; the gap-repair DAG fills whatever the outage missed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from airflow.sdk.bases.sensor import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from include.binance.client import BinanceClient, UnlistedSymbols, require_listed
from include.config import ConfigError, load_settings
from include.ingest.background import BackgroundWorker
from include.ingest.run import boundary_client, close_stream_lake, open_stream_lake, stream_start_boundary
from include.ingest.stream import StreamSettings
from include.ingest.worker import DEFAULT_FLUSH_TRADES, StreamWorker, WorkerSettings
from include.ingest.writer import airflow_writer_id
from include.lake.store import ObjectStore


class StreamStopped(RuntimeError):
    """The task was told to stop (SIGTERM) mid-window: it fails, so its retry streams on."""


class TradeStreamSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("symbols", "window_end")
    ui_color = "#f0b90b"

    def __init__(
        self,
        *,
        symbols: str | Sequence[str],
        window_end: str | datetime,
        flush_seconds: float = 5.0,
        flush_trades: int = DEFAULT_FLUSH_TRADES,
        silence_seconds: float = 30.0,
        aws_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", flush_seconds)
        super().__init__(mode="poke", **kwargs)
        self.symbols = symbols
        self.window_end = window_end
        self.flush_seconds = flush_seconds
        self.flush_trades = flush_trades
        self.silence_seconds = silence_seconds
        self.aws_conn_id = aws_conn_id
        self._worker: BackgroundWorker | None = None
        self._lake: ObjectStore | None = None
        self._client: BinanceClient | None = None  # asked for the start boundaries of the stream's gaps
        self._killed = False

    def _symbols(self) -> tuple[str, ...]:
        if isinstance(self.symbols, str):
            return tuple(part for part in self.symbols.split(",") if part)
        return tuple(self.symbols)

    def _end(self) -> datetime:
        end = self.window_end
        return datetime.fromisoformat(end) if isinstance(end, str) else end

    def _start_worker(self, context: Any) -> BackgroundWorker:
        try:
            settings = load_settings()
            # A symbol the exchange does not trade would stream nothing, silently: refuse it up front.
            with BinanceClient(settings.rest_url) as client:
                require_listed(client, self._symbols(), trading=True)
        except (ConfigError, UnlistedSymbols) as error:
            raise AirflowFailException(str(error)) from None  # a retry would not fix it
        # One writer per task instance: its own spool folder and marker. A retry of the same task
        # instance makes the same id, so it drains its predecessor's spool and carries on its marker.
        ti = context["ti"]
        writer = airflow_writer_id(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        self._lake = open_stream_lake(settings, writer, self.aws_conn_id)
        self._client = boundary_client(settings)
        worker = StreamWorker(
            WorkerSettings(
                symbols=self._symbols(),
                stream=StreamSettings(ws_url=settings.ws_url, silence_seconds=self.silence_seconds),
                # Pokes flush; the worker's own timer is only a safety net should a poke be late.
                flush_seconds=self.flush_seconds * 3,
                flush_trades=self.flush_trades,
            ),
            self._lake,
            writer,
            start_boundary=stream_start_boundary(self._client, self._lake),
        )
        self.log.info(
            "streaming %s from %s into %s until %s as writer %s",
            ",".join(self._symbols()),
            settings.ws_url,
            settings.lake_url,
            self._end().isoformat(),
            writer,
        )
        background = BackgroundWorker(worker)
        background.start()
        return background

    def poke(self, context: Any) -> bool:
        if self._killed:
            raise StreamStopped(f"the stream was stopped before its window ended ({self._end().isoformat()})")
        if self._worker is None:
            self._worker = self._start_worker(context)
        result = self._worker.flush()
        stats = self._worker.worker.stats
        lags = [
            time.time() - status.last_trade_time_us / 1e6
            for status in self._worker.worker.batcher.status.values()
            if status.last_trade_time_us
        ]
        self.log.info(
            "micro-batch: %d trades, %d quarantined, %d duplicates, %d gaps, %d objects, %.3f s | total %d trades, "
            "%d reconnects, %d quarantined, %d gaps (%d ids) | lag %s",
            result.trades_written,
            result.quarantined,
            result.duplicates,
            len(result.gaps),
            len(result.keys),
            result.seconds,
            stats.written,
            stats.reconnects,
            stats.quarantined,
            stats.gaps,
            stats.gap_ids,
            f"{max(lags):.1f} s" if lags else "n/a",
        )
        if datetime.now(self._end().tzinfo) < self._end():
            return False
        self.log.info("window ended at %s: closing the stream", self._end().isoformat())
        self._close()  # raises if the stop did not finish: the task fails rather than claim success
        return True

    def _close(self, timeout: float = 60.0) -> None:
        worker, lake, client = self._worker, self._lake, self._client
        self._worker = self._lake = self._client = None
        try:
            if worker is not None:
                worker.stop(timeout)  # on a timeout the spool stays held until this process ends
        finally:
            if client is not None:
                client.close()
        if lake is not None:
            close_stream_lake(lake)

    def on_kill(self) -> None:
        """SIGTERM (a worker or `make up` stopping): flush and close now, and end the task at its next poke.

        Airflow's task runner calls this from its signal handler and then lets the task go on: without
        the flag, the next poke would open a new stream in a process about to be killed, and the task
        would stay "running" in the metadata database until its heartbeat timed out (minutes), with no
        stream after a restart. Failed instead, it is retried within seconds.
        """
        self._killed = True
        self._close(timeout=10)
