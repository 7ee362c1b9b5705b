"""The streaming worker: shards of WebSocket connections feeding one micro-batcher.

It flushes every ``flush_seconds`` or as soon as ``flush_trades`` are waiting, whichever comes first,
and on request (the Airflow sensor flushes on every poke). Writes run in a thread, one at a time,
so the receive loop keeps reading while a batch is written. When writes fall behind and
``max_buffered_trades`` are waiting, reading pauses until the flush catches up: memory stays
bounded and nothing is dropped.

Each connection runs under a supervisor: a connection that crashes is restarted with backoff, one
that keeps crashing ends the worker with its error. Each connection reports its own state, which
the heartbeats of its symbols show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field

from include.binance.protocol import MAX_STREAMS_PER_CONNECTION
from include.ingest.batcher import FlushResult, MicroBatcher
from include.ingest.gaps import StartBoundary
from include.ingest.stream import (
    Backpressure,
    ConnectionBudget,
    ShardConnection,
    StreamSettings,
    backoff_delay,
    shard,
    stream_names,
)
from include.ingest.writer import process_writer_id
from include.lake.store import ObjectStore
from include.timeutil import now_us

log = logging.getLogger(__name__)


DEFAULT_FLUSH_SECONDS = 5.0
DEFAULT_FLUSH_TRADES = 50_000  # bounds the batch in memory (~12 MB of frames) at any trade rate


@dataclass(frozen=True)
class WorkerSettings:
    symbols: tuple[str, ...]
    stream: StreamSettings
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    flush_trades: int = DEFAULT_FLUSH_TRADES
    max_buffered_trades: int = 200_000
    streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    heartbeat_seconds: float = 5.0
    restart_limit: int = 5  # crashes of one connection within the window that end the worker
    restart_window_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("no symbols to stream")
        if self.restart_limit < 1 or self.restart_window_seconds <= 0:
            raise ValueError(
                f"restart_limit={self.restart_limit} must be >= 1 and "
                f"restart_window_seconds={self.restart_window_seconds} > 0"
            )
        if self.flush_seconds <= 0 or self.flush_trades <= 0:
            raise ValueError(f"flush_seconds={self.flush_seconds} and flush_trades={self.flush_trades} must be > 0")
        if self.max_buffered_trades < self.flush_trades:
            raise ValueError(
                f"max_buffered_trades={self.max_buffered_trades} is below flush_trades={self.flush_trades}"
            )


class ConnectionFailed(RuntimeError):
    """A connection kept crashing: the worker stops with its error, so the task fails and is retried."""


@dataclass
class WorkerState:
    shards: list[ShardConnection] = field(default_factory=list)
    last_flush: float = 0.0
    last_heartbeat: float = 0.0


class StreamWorker:
    def __init__(
        self,
        settings: WorkerSettings,
        lake: ObjectStore,
        writer: str | None = None,
        start_boundary: StartBoundary | None = None,
    ) -> None:
        """``writer`` names this worker's write marker; the caller that spools uses the same id for the
        spool folder. Without one the worker is a writer of its own, unique in this process.
        ``start_boundary`` is where a symbol's history starts when the lake holds nothing before its
        first trade (the caller has the settings and a REST client: ``include/repair/boundary.py``);
        without it the worker records no start gap."""
        self.settings = settings
        self.lake = lake
        self.writer = writer or process_writer_id()
        self.batcher = MicroBatcher(lake, frozenset(settings.symbols), self.writer, start_boundary=start_boundary)
        self.state = WorkerState()
        self.backpressure: Backpressure | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._rng = random.Random()
        self.ready = asyncio.Event()

    @property
    def stats(self):  # noqa: ANN201 - StreamStats, re-exported for callers
        return self.batcher.stats

    def reconnects(self) -> int:
        return sum(max(connection.connects - 1, 0) for connection in self.state.shards)

    async def flush(self, *, final: bool = False) -> FlushResult:
        """Write whatever is buffered now; safe to call at any time, writes never overlap.

        The ``final`` flush always writes the heartbeats, so the last state an operator reads
        ("stopped", "failed") is the connection's real one even when no trade came since."""
        assert self._flush_lock is not None, "flush() is only valid while run() is running"
        async with self._flush_lock:
            batch = self.batcher.take()
            self.state.last_flush = time.monotonic()
            # Encoding runs here, on the loop: a thread would only fight the receive loop for the GIL.
            # The puts run in a thread, so a slow or unreachable S3 never stalls the connections.
            prepared = self.batcher.prepare(batch)
            result = await asyncio.to_thread(self.batcher.store, prepared)
            if self.backpressure is not None:
                self.backpressure.resume()  # written: the readers may fill the buffer again
            self.batcher.stats.reconnects = self.reconnects()
            heartbeat_due = time.monotonic() - self.state.last_heartbeat >= self.settings.heartbeat_seconds
            if final or heartbeat_due or result.keys:
                self.state.last_heartbeat = time.monotonic()
                await asyncio.to_thread(self.batcher.write_heartbeats)
            if result.trades_written or result.quarantined:
                log.info(
                    "flushed %d trades (%d duplicates dropped, %d quarantined, %d gaps) in %.3f s into %d objects",
                    result.trades_written,
                    result.duplicates,
                    result.quarantined,
                    len(result.gaps),
                    result.seconds,
                    len(result.keys),
                )
            return result

    def _connection_state(self, symbols: list[str], state: dict[str, object]) -> None:
        for symbol in symbols:
            self.batcher.connection_states[symbol] = state

    def _connect(self, streams: list[str], index: int, budget: ConnectionBudget) -> ShardConnection:
        symbols = [name.split("@", 1)[0].upper() for name in streams]
        return ShardConnection(
            streams,
            self.settings.stream,
            self.batcher.frames.append,
            self.batcher.add_other,
            budget,
            backpressure=self.backpressure,
            on_state=lambda state: self._connection_state(symbols, {**state, "connection": index}),
            on_reconnect=lambda: self._reconnected(symbols),
        )

    def _reconnected(self, symbols: list[str]) -> None:
        """A connection was opened again after one was lost: the batcher marks where in the frames, and
        the stats note when (the heartbeat reports the recent ones: a reconnect storm is an alert)."""
        self.batcher.reconnected(symbols)
        self.batcher.stats.reconnected_at(now_us())

    async def _supervise(self, connection: ShardConnection, closing: asyncio.Event) -> None:
        """Run one connection until ``closing``; restart it after a crash, with backoff.

        A connection that crashes ``restart_limit`` times within ``restart_window_seconds`` is not
        going to get better by itself: its error ends the worker, loudly.
        """
        settings, crashes = self.settings, deque[float]()
        while not closing.is_set():
            try:
                await connection.run(closing)
                continue
            except Exception as error:  # every crash is restarted, then escalated
                now = time.monotonic()
                crashes.append(now)
                while now - crashes[0] > settings.restart_window_seconds:
                    crashes.popleft()
                connection.restarts += 1
                if len(crashes) >= settings.restart_limit:
                    connection.report({"state": "failed", "error": repr(error), "at": time.time()})
                    raise ConnectionFailed(
                        f"the connection for {','.join(connection.streams[:3])}"
                        f"{'...' if len(connection.streams) > 3 else ''} crashed {len(crashes)} times within "
                        f"{settings.restart_window_seconds:g} s; last error: {error!r}"
                    ) from error
                stream = settings.stream
                delay = backoff_delay(
                    len(crashes) - 1, stream.backoff_base_seconds, stream.backoff_cap_seconds, self._rng
                )
                log.error("connection for %s crashed; restarting in %.1f s", connection.url, delay, exc_info=error)
                connection.report({"state": "restarting", "error": repr(error), "at": time.time()})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), delay)

    async def _step(self) -> None:
        """Flush when due or when enough trades wait; otherwise look again shortly."""
        waiting = len(self.batcher)
        due = time.monotonic() - self.state.last_flush >= self.settings.flush_seconds
        if due or waiting >= self.settings.flush_trades:
            await self.flush()
        else:
            await asyncio.sleep(0.02)

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set, then close the connections and flush what is left.

        A connection that keeps crashing ends the run with its error (``ConnectionFailed``), after
        the other connections closed and what they received was flushed.
        """
        settings = self.settings
        self._flush_lock = asyncio.Lock()
        self.backpressure = Backpressure(self.batcher.frames, settings.max_buffered_trades)
        closing = asyncio.Event()
        budget = ConnectionBudget(settings.stream.attempts_per_window, settings.stream.attempt_window_seconds)
        self.state.shards = [
            self._connect(streams, index, budget)
            for index, streams in enumerate(shard(stream_names(settings.symbols), settings.streams_per_connection))
        ]
        supervisors = [asyncio.create_task(self._supervise(c, closing)) for c in self.state.shards]
        self.state.last_flush = time.monotonic()
        self.ready.set()
        failure: BaseException | None = None
        try:
            while not stop.is_set() and failure is None:
                failure = next((t.exception() for t in supervisors if t.done() and not t.cancelled()), None)
                await self._step()
        finally:
            closing.set()
            self.backpressure.resume()  # a reader waiting for room must see the close
            await asyncio.gather(*supervisors, return_exceptions=True)
            for connection in self.state.shards:
                if connection.state.get("state") != "failed":
                    connection.report({"state": "stopped", "at": time.time()})
            await self.flush(final=True)
        if failure is not None:
            raise failure
