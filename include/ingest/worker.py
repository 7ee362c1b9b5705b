"""The streaming worker: shards of WebSocket connections feeding one micro-batcher.

It flushes every ``flush_seconds`` or as soon as ``flush_trades`` are waiting, whichever comes first,
and on request (the Airflow sensor flushes on every poke). Writes run in a thread, one at a time,
so the receive loop keeps reading while a batch is written. When writes fall behind and
``max_buffered_trades`` are waiting, reading pauses until the flush catches up: memory stays
bounded and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from include.binance.protocol import MAX_STREAMS_PER_CONNECTION
from include.ingest.batcher import FlushResult, MicroBatcher
from include.ingest.stream import ConnectionBudget, ShardConnection, StreamSettings, shard, stream_names
from include.lake.store import ObjectStore

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

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("no symbols to stream")
        if self.flush_seconds <= 0 or self.flush_trades <= 0:
            raise ValueError(f"flush_seconds={self.flush_seconds} and flush_trades={self.flush_trades} must be > 0")
        if self.max_buffered_trades < self.flush_trades:
            raise ValueError(
                f"max_buffered_trades={self.max_buffered_trades} is below flush_trades={self.flush_trades}"
            )


@dataclass
class WorkerState:
    shards: list[ShardConnection] = field(default_factory=list)
    last_flush: float = 0.0
    last_heartbeat: float = 0.0


class StreamWorker:
    def __init__(self, settings: WorkerSettings, lake: ObjectStore) -> None:
        self.settings = settings
        self.lake = lake
        self.batcher = MicroBatcher(lake, frozenset(settings.symbols))
        self.state = WorkerState()
        self._flush_lock: asyncio.Lock | None = None
        self.ready = asyncio.Event()

    @property
    def stats(self):  # noqa: ANN201 - StreamStats, re-exported for callers
        return self.batcher.stats

    def reconnects(self) -> int:
        return sum(max(connection.connects - 1, 0) for connection in self.state.shards)

    async def flush(self) -> FlushResult:
        """Write whatever is buffered now; safe to call at any time, writes never overlap."""
        assert self._flush_lock is not None, "flush() is only valid while run() is running"
        async with self._flush_lock:
            batch = self.batcher.take()
            self.state.last_flush = time.monotonic()
            # Encoding runs here, on the loop: a thread would only fight the receive loop for the GIL.
            # The puts run in a thread, so a slow or unreachable S3 never stalls the connections.
            prepared = self.batcher.prepare(batch)
            result = await asyncio.to_thread(self.batcher.store, prepared)
            self.batcher.stats.reconnects = self.reconnects()
            if time.monotonic() - self.state.last_heartbeat >= self.settings.heartbeat_seconds or result.keys:
                self.state.last_heartbeat = time.monotonic()
                await asyncio.to_thread(self.batcher.write_heartbeats)
            if result.trades_written or result.quarantined:
                log.info(
                    "flushed %d trades (%d duplicates dropped, %d quarantined) in %.3f s into %d objects",
                    result.trades_written,
                    result.duplicates,
                    result.quarantined,
                    result.seconds,
                    len(result.keys),
                )
            return result

    def _set_connection_state(self, state: dict[str, object]) -> None:
        self.batcher.connection = state

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set, then close the connections and flush what is left."""
        settings = self.settings
        self._flush_lock = asyncio.Lock()
        room = asyncio.Event()
        room.set()
        budget = ConnectionBudget(settings.stream.attempts_per_window, settings.stream.attempt_window_seconds)
        self.state.shards = [
            ShardConnection(
                streams,
                settings.stream,
                self.batcher.frames.append,
                self.batcher.add_other,
                budget,
                room=room,
                on_state=self._set_connection_state,
            )
            for streams in shard(stream_names(settings.symbols), settings.streams_per_connection)
        ]
        readers = [asyncio.create_task(connection.run(stop)) for connection in self.state.shards]
        self.state.last_flush = time.monotonic()
        self.ready.set()
        try:
            while not stop.is_set():
                waiting = len(self.batcher)
                due = time.monotonic() - self.state.last_flush >= settings.flush_seconds
                if waiting >= settings.max_buffered_trades:
                    room.clear()  # backpressure: readers pause until this flush is done
                if due or waiting >= settings.flush_trades:
                    await self.flush()
                    room.set()
                else:
                    await asyncio.sleep(0.02)
        finally:
            await asyncio.gather(*readers, return_exceptions=True)
            self.batcher.connection = {"state": "stopped", "at": time.time()}
            await self.flush()
