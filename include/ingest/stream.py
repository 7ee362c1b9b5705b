"""The WebSocket side of the stream: combined trade streams, kept alive whatever the network does.

One ``ShardConnection`` per group of at most 1024 streams (Binance's limit per connection). It
reconnects with capped, jittered exponential backoff inside Binance's budget of 300 connection
attempts per 5 minutes, and it hands over to a fresh connection *before* closing the old one when
the old one nears its 24-hour lifetime, announces ``serverShutdown`` or goes silent. Frames from
both connections overlap for a moment; the batcher drops the duplicate ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from include.binance.protocol import (
    CONNECTION_ATTEMPT_WINDOW_SECONDS,
    CONNECTION_ATTEMPTS_PER_WINDOW,
    MAX_STREAMS_PER_CONNECTION,
)
from include.ingest.parse import Control, looks_like_trade

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSettings:
    ws_url: str
    refresh_after_seconds: float = 23.5 * 3600  # hand over well before Binance's 24 h cut-off
    silence_seconds: float = 30.0  # no frame at all for this long: the connection is presumed dead
    overlap_seconds: float = 1.0  # a handover: both read this long after the new one first delivers
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 30.0
    open_timeout_seconds: float = 10.0
    attempts_per_window: int = CONNECTION_ATTEMPTS_PER_WINDOW
    attempt_window_seconds: float = CONNECTION_ATTEMPT_WINDOW_SECONDS


def stream_names(symbols: list[str] | tuple[str, ...]) -> list[str]:
    return [f"{symbol.lower()}@trade" for symbol in symbols]


def shard(streams: list[str], size: int = MAX_STREAMS_PER_CONNECTION) -> list[list[str]]:
    if not 1 <= size <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(f"shard size {size} is outside 1..{MAX_STREAMS_PER_CONNECTION}")
    return [streams[i : i + size] for i in range(0, len(streams), size)]


def stream_url(ws_url: str, streams: list[str]) -> str:
    return f"{ws_url.rstrip('/')}/stream?streams={'/'.join(streams)}&timeUnit=MICROSECOND"


class ConnectionBudget:
    """At most ``limit`` connection attempts per sliding ``window`` seconds, across all shards."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._attempts: deque[float] = deque()

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for room for one attempt; False if ``stop`` was set first (a full window can be minutes)."""
        while True:
            now = time.monotonic()
            while self._attempts and now - self._attempts[0] >= self.window:
                self._attempts.popleft()
            if len(self._attempts) < self.limit:
                self._attempts.append(now)
                return True
            delay = self.window - (now - self._attempts[0])
            if stop is None:
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return False


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with jitter: uniformly between half and all of the step."""
    step = min(cap, base * 2.0 ** min(attempt, 64))  # 2**1024 overflows a float: a long outage
    return rng.uniform(step / 2, step)


class Backpressure:
    """Reading pauses while ``limit`` frames wait in ``frames``; the writer resumes it after a flush.

    Every reader checks the length after each frame it appends, so the buffer never holds more than
    ``limit`` plus one frame per connection, however fast the frames come.
    """

    def __init__(self, frames: list[bytes], limit: int) -> None:
        self.frames = frames
        self.limit = limit
        self.room = asyncio.Event()
        self.room.set()

    @property
    def paused(self) -> bool:
        return not self.room.is_set()

    def resume(self) -> None:
        self.room.set()


WATCH_SECONDS = 0.5  # how often a connection's watchdog looks at its reader


@dataclass
class _Reader:
    ws: ClientConnection
    opened: float
    last_frame: float  # when a frame was last seen arriving (noticed by ``_observe``)
    task: asyncio.Task[None] | None = None
    shutdown_notice: bool = False
    first_frame: float | None = None
    frames: int = 0  # counted by the read loop; cheaper per frame than reading the clock
    frames_seen: int = 0
    last_check: float | None = None  # when the watchdog last looked

    def observe(self) -> None:
        """Turn the frame counter into times; called a few times a second, not per frame."""
        if self.frames != self.frames_seen:
            now = time.monotonic()
            self.frames_seen = self.frames
            self.last_frame = now
            if self.first_frame is None:
                self.first_frame = now


class ShardConnection:
    """Reads one shard of streams until ``stop`` is set.

    Trade frames go to ``append`` untouched (the receive loop's whole job); any other frame goes to
    ``on_other``, which may hand back a control message such as ``serverShutdown``.
    """

    def __init__(
        self,
        streams: list[str],
        settings: StreamSettings,
        append: Callable[[bytes], None],
        on_other: Callable[[bytes], Control | None],
        budget: ConnectionBudget,
        backpressure: Backpressure | None = None,
        on_state: Callable[[dict[str, object]], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        """``on_reconnect`` is called when a connection is opened again after the last one ended (not
        on a handover, where both overlap), before the new one's first frame: what was received
        before it and after it are the two sides of a reconnect gap."""
        self.streams = streams
        self.settings = settings
        self.url = stream_url(settings.ws_url, streams)
        self._append = append
        self._on_other = on_other
        self._budget = budget
        self._backpressure = backpressure
        self._on_state = on_state or (lambda state: None)
        self._on_reconnect = on_reconnect or (lambda: None)
        self._rng = random.Random()
        self.connects = 0
        self.handovers = 0
        self.restarts = 0  # counted by whoever restarts this connection after a crash
        self.state: dict[str, object] = {"state": "starting"}

    def report(self, state: dict[str, object]) -> None:
        """This connection's state as the heartbeat shows it (each connection has its own)."""
        self.state = {**state, "streams": len(self.streams), "restarts": self.restarts}
        self._on_state(self.state)

    async def _open(self, stop: asyncio.Event) -> ClientConnection | None:
        attempt = 0
        while not stop.is_set():
            if not await self._budget.acquire(stop):
                return None
            try:
                ws = await connect(
                    self.url,
                    open_timeout=self.settings.open_timeout_seconds,
                    compression=None,
                    max_size=1 << 20,
                    max_queue=1024,
                    ping_interval=20,
                    ping_timeout=20,
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
                delay = backoff_delay(
                    attempt, self.settings.backoff_base_seconds, self.settings.backoff_cap_seconds, self._rng
                )
                attempt += 1
                log.warning("connect to %s failed (%s); retrying in %.1f s", self.url, error, delay)
                self.report({"state": "reconnecting", "error": str(error), "attempt": attempt})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            self.connects += 1
            self.report({"state": "connected", "since": time.time(), "connects": self.connects})
            return ws
        return None

    def _start_reader(self, ws: ClientConnection) -> _Reader:
        now = time.monotonic()
        reader = _Reader(ws, now, now)
        reader.task = asyncio.create_task(self._read(reader))
        return reader

    async def _read(self, reader: _Reader) -> None:
        append, on_other, recv = self._append, self._on_other, reader.ws.recv
        pressure = self._backpressure or Backpressure([], 1 << 62)
        frames, limit, room = pressure.frames, pressure.limit, pressure.room
        try:
            while True:
                frame = await recv(decode=False)
                reader.frames += 1
                if looks_like_trade(frame):
                    append(frame)
                else:
                    control = on_other(frame)
                    if control is not None and control.kind == "serverShutdown":
                        log.info("serverShutdown from %s: handing over to a new connection", self.url)
                        reader.shutdown_notice = True
                if len(frames) >= limit:
                    room.clear()  # full: stop reading (the socket holds the rest) until a flush resumes it
                if not room.is_set():
                    await room.wait()
        except ConnectionClosed as closed:
            log.info("connection closed: %s", closed)

    def _needs_handover(self, reader: _Reader) -> str | None:
        reader.observe()
        now = time.monotonic()
        if reader.shutdown_notice:
            return "serverShutdown"
        if now - reader.opened >= self.settings.refresh_after_seconds:
            return "lifetime"
        # Silence is judged only over time this connection was reading and being watched: while reading
        # is paused on purpose, or while this loop was held up (a busy machine), the exchange was not
        # seen going silent.
        paused = self._backpressure is not None and self._backpressure.paused
        held_up = reader.last_check is not None and now - reader.last_check > 2 * WATCH_SECONDS
        reader.last_check = now
        if paused or held_up:
            reader.last_frame = now
        if now - reader.last_frame >= self.settings.silence_seconds:
            return "silence"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        restarted = self.connects > 0  # run again by its supervisor after a crash: a reconnect
        ws = await self._open(stop)
        if ws is None:
            return
        if restarted:
            self._on_reconnect()
        reader = self._start_reader(ws)
        stopped = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                assert reader.task is not None
                await asyncio.wait([reader.task, stopped], timeout=WATCH_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    break
                if reader.task.done():
                    _raise_crash(reader.task)  # a reader that crashed ends this run: its supervisor decides
                    # The connection is gone: nothing to overlap with, so reconnect.
                    ws = await self._open(stop)
                    if ws is None:
                        break
                    self._on_reconnect()
                    reader = self._start_reader(ws)
                    continue
                why = self._needs_handover(reader)
                if why is None:
                    continue
                log.info("handover on %s: %s", self.url, why)
                fresh = await self._open(stop)
                if fresh is None:
                    break
                old, reader = reader, self._start_reader(fresh)
                self.handovers += 1
                await self._retire(old, reader, stop)
        finally:
            stopped.cancel()
            await self._close(reader)

    async def _retire(self, old: _Reader, new: _Reader, stop: asyncio.Event) -> None:
        """Close ``old`` once ``new`` has delivered frames for ``overlap_seconds``.

        A silent connection may only be stalled and still hold frames it has not sent: closing it
        before the new one delivers would lose them. A new connection that stays silent as long as
        a connection may be silent does not keep the old one open any longer.
        """
        settings = self.settings
        give_up = new.opened + settings.silence_seconds + settings.overlap_seconds
        try:
            while not stop.is_set() and not (old.task and old.task.done()) and not (new.task and new.task.done()):
                new.observe()
                now = time.monotonic()
                if now >= give_up or (
                    new.first_frame is not None and now - new.first_frame >= settings.overlap_seconds
                ):
                    return
                await asyncio.sleep(0.05)
        finally:
            await self._close(old)

    async def _close(self, reader: _Reader) -> None:
        """Close the connection and let the reader take what arrived before the close.

        The frames received before the close handshake are still queued in the connection: the
        reader reads them and then ends by itself, so a graceful stop keeps everything received.
        A reader that does not end in time (one paused by backpressure) is cancelled.
        """
        await reader.ws.close()
        if reader.task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader.task), self.settings.open_timeout_seconds)
        if not reader.task.done():
            reader.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader.task


def _raise_crash(task: asyncio.Task[None]) -> None:
    """Re-raise what a finished reader task died of; a reader that ended with its connection is fine."""
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
