"""Binance spot WebSocket market streams: raw ``/ws/<stream>``, combined ``/stream?streams=``, and
``/ws`` or ``/ws/<connection number>`` followed by ``SUBSCRIBE`` (``include.sandbox.control``).

Payloads are byte-for-byte Binance's trade events; the order book's streams are made in
``include.sandbox.book_feeds`` and queued here, per connection like the trades. The server pings
every ``ping_interval`` and drops a connection whose pong is ``pong_timeout`` late, ends connections
at their lifetime, limits streams per connection and incoming messages per second, and sends ``serverShutdown`` before a
graceful stop. Faults (skipped messages, malformed frames, stalls, dropped connections) are applied
here, per connection, and recorded on the exchange; a malformed frame is recorded when it is written
to its connection, not when it is queued, so the record holds exactly what clients were sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from include.binance.protocol import (
    CONNECTION_ATTEMPT_WINDOW_SECONDS,
    CONNECTION_ATTEMPTS_PER_WINDOW,
    TIME_UNITS,
)
from include.decimals import format_units
from include.sandbox.book_feeds import BookFeeds
from include.sandbox.control import control_reply
from include.sandbox.exchange import Exchange
from include.sandbox.faults import MALFORMED_KINDS, malformed_frame
from include.sandbox.store import Trade
from include.sandbox.stream_events import agg_trade_event
from include.sandbox.streams import AGG_TRADE, TRADE, Stream, parse_stream, stream_name, valid_stream_name
from include.sandbox.subscriptions import SubscriptionIndex

_MAX_QUEUED_FRAMES = 2_000_000  # a client this far behind is dropped, as Binance drops slow readers
_FRAMES_PER_WRITE = 2000
_WRITE_BUFFER_HIGH = 4 << 20
_HOUSEKEEPING_SECONDS = 0.05
# A dropped connection first hands the client what was already written; one that does not read it
# within this long is aborted, discarding it.
_DROP_FLUSH_SECONDS = 30.0


def text_frame(text: str) -> bytes:
    """One unmasked, uncompressed WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


def trade_event(trade: Trade, symbol: str, event_time: int, microseconds: bool) -> str:
    """Binance's trade event; the buyer/seller order ids ``b``/``a`` were removed on 2024-06-18."""
    trade_time = trade.time_us if microseconds else trade.time_us // 1000
    maker = "true" if trade.is_buyer_maker else "false"
    return (
        f'{{"e":"trade","E":{event_time},"s":"{symbol}","t":{trade.trade_id},'
        f'"p":"{format_units(trade.price)}","q":"{format_units(trade.qty)}",'
        f'"T":{trade_time},"m":{maker},"M":true}}'
    )


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A broken frame in a connection's queue, told apart from the plain text of the good ones so
    that the fault record can count it when it is written, with its kind."""

    text: str
    kind: str


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        streams: list[str],
        modes: tuple[bool, bool],
        changed: Callable[[], None],
    ) -> None:
        self.ws = ws
        self.transport = request.transport
        self._changed = changed  # the hub's subscription index: told whenever what it reads changes
        self._closing = False
        self.streams = streams
        self.combined, self.microseconds = modes
        self.opened = time.monotonic()
        self.queue: deque[str | MalformedFrame] = deque()
        self.malformed_queued = 0  # MalformedFrames in the queue: while 0, frames are written unexamined
        self.wake = asyncio.Event()
        self.last_ping = self.opened
        self.awaiting_pong_since: float | None = None
        self.ping_payloads: set[bytes] = set()  # pings not yet answered with a copy of their payload
        self.incoming: deque[float] = deque()

    @property
    def streams(self) -> list[str]:
        """The names subscribed to, as asked (control messages assign a new list)."""
        return self._streams

    @streams.setter
    def streams(self, names: list[str]) -> None:
        self._streams = names
        self._parsed = {name: stream for name in names if (stream := parse_stream(name))}
        self._changed()

    @property
    def closing(self) -> bool:
        """Being closed or dropped: it gets no more events."""
        return self._closing

    @closing.setter
    def closing(self, closing: bool) -> None:
        self._closing = closing
        self._changed()

    def subscriptions(self) -> dict[str, Stream]:
        """The streams this connection subscribes to that the sandbox serves, by name: parsed when
        the list is assigned, not per published batch."""
        return self._parsed

    def answered(self, payload: bytes) -> None:
        """A pong arrived. Only one echoing a ping's payload answers it; unsolicited pongs are
        allowed but, as on Binance, do not prevent disconnection."""
        if payload in self.ping_payloads:
            self.awaiting_pong_since = None
            self.ping_payloads.clear()

    async def ping(self, now: float) -> None:
        self.last_ping = now
        if self.awaiting_pong_since is None:
            self.awaiting_pong_since = now
        payload = str(int(time.time() * 1000)).encode()
        self.ping_payloads.add(payload)
        await self.ws.ping(payload)


def _frames_for(
    conn: Connection, stream: str, made: dict[tuple[bool, bool], list[str]], events: Callable[[bool], list[str]]
) -> list[str]:
    """A batch of events as this connection takes them (its time unit, wrapped when combined): made
    once per kind of connection (``made`` keeps them), whatever the number of connections."""
    key = (conn.microseconds, conn.combined)
    if key not in made:
        texts = events(conn.microseconds)
        made[key] = [f'{{"stream":"{stream}","data":{text}}}' for text in texts] if conn.combined else texts
    return made[key]


@dataclass
class _FaultTimers:
    """When the timed faults last fired."""

    last_stall: float
    last_drop: float


def requested_streams(path: str, combined_query: str) -> tuple[list[str], bool]:
    """The streams a connection URL subscribes to, and whether its events are combined.

    ``/stream?streams=a/b`` is combined. ``/ws/<stream>`` (or several, ``/ws/a/b``) is raw. As on
    Binance, ``/ws`` and ``/ws/<anything that is not a stream>`` (clients put a connection number
    there) subscribe to nothing: the client sends ``SUBSCRIBE`` next. A tail that names a stream (it
    has an ``@``) must be a valid one.
    """
    if path.startswith("/stream"):
        return [name for name in combined_query.split("/") if name], True
    names = [name for name in path[len("/ws") :].split("/") if name]
    if not any("@" in name for name in names):
        return [], False
    return names, False


class StreamHub:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.config = exchange.config
        self.connections: set[Connection] = set()
        self.index = SubscriptionIndex(self.connections)  # told of every change by the connections
        self.stalled_until = 0.0
        self.attempts: dict[str, deque[float]] = {}
        self._closing_tasks: set[asyncio.Task[None]] = set()
        exchange.listeners.append(self.publish)
        self.book_feeds = BookFeeds(exchange, self)
        exchange.listeners.append(self.book_feeds.on_trades)

    # Publishing ------------------------------------------------------------------------------

    def publish(self, new: dict[str, list[Trade]]) -> None:
        if not self.connections:
            return
        event_time = self.exchange.now_us()
        for symbol, trades in new.items():
            self._publish_trades(symbol, trades, event_time)
            self._publish_aggregates(symbol, len(trades), event_time)

    def _publish_trades(self, symbol: str, trades: list[Trade], event_time: int) -> None:
        faults, rng, record = self.exchange.faults, self.exchange.rng, self.exchange.record
        stream = stream_name(symbol, TRADE)
        subscribers = self.index.subscribers(stream)
        if not subscribers:
            return

        def events(micro: bool) -> list[str]:
            return [trade_event(t, symbol, event_time if micro else event_time // 1000, micro) for t in trades]

        encoded: dict[tuple[bool, bool], list[str]] = {}
        for conn in subscribers:
            frames = _frames_for(conn, stream, encoded, events)
            if faults.skip_fraction or faults.malformed_fraction:
                self._queue_with_faults(conn, frames, trades, symbol, rng, record)
            else:
                conn.queue.extend(frames)
            self._woken(conn)

    def _publish_aggregates(self, symbol: str, new_trades: int, event_time: int) -> None:
        """``@aggTrade``: the aggregates of the trades just made, from the store, in order.

        A tick hands on every trade up to now, and an aggregate's trades share one time, so the
        aggregates that start among the new trades are complete and none of the earlier ones grew.
        """
        stream = stream_name(symbol, AGG_TRADE)
        subscribers = self.index.subscribers(stream)
        if not subscribers:
            return
        store = self.exchange.sources[symbol].store
        first = bisect_left(store.agg_first, len(store) - new_trades)
        aggregates = [store.agg(index) for index in range(first, store.agg_count())]

        def events(micro: bool) -> list[str]:
            when = event_time if micro else event_time // 1000
            return [agg_trade_event(agg, symbol, when, micro) for agg in aggregates]

        encoded: dict[tuple[bool, bool], list[str]] = {}
        for conn in subscribers:
            conn.queue.extend(_frames_for(conn, stream, encoded, events))
            self._woken(conn)

    def _woken(self, conn: Connection) -> None:
        """Wake a connection's sender after queueing; drop it if it is too far behind to catch up."""
        if len(conn.queue) > _MAX_QUEUED_FRAMES:
            self._drop(conn)
        conn.wake.set()

    # The periodic streams (include.sandbox.periodic) ---------------------------------------------

    def subscribed(self) -> Mapping[str, Stream]:
        """Every served stream some open connection subscribes to, by name (the same object until
        a subscription changes: readers may keep what they derive from it until then)."""
        return self.index.streams()

    def queue_event(self, stream: str, encode: Callable[[bool], str]) -> None:
        """Queue one event of ``stream`` to each of its subscribers, encoded once per time unit."""
        encoded: dict[bool, str] = {}
        for conn in self.index.subscribers(stream):
            if conn.microseconds not in encoded:
                encoded[conn.microseconds] = encode(conn.microseconds)
            event = encoded[conn.microseconds]
            conn.queue.append(f'{{"stream":"{stream}","data":{event}}}' if conn.combined else event)
            self._woken(conn)

    def _queue_with_faults(
        self, conn: Connection, frames: list[str], trades: list[Trade], symbol: str, rng: Any, record: Any
    ) -> None:
        """Queue ``frames`` with a broken copy before some and some left out, as the faults say."""
        faults = self.exchange.faults
        queue = conn.queue
        for frame, trade in zip(frames, trades, strict=True):
            if faults.malformed_fraction and rng.random() < faults.malformed_fraction:
                kind = rng.choice(MALFORMED_KINDS)
                queue.append(MalformedFrame(malformed_frame(kind, frame, symbol, rng), kind))
                conn.malformed_queued += 1
            if faults.skip_fraction and rng.random() < faults.skip_fraction:
                record.skipped_ids[symbol].append(trade.trade_id)
                continue
            queue.append(frame)

    # Connections -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        streams, combined, microseconds = self._admitted(request)
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        conn = Connection(ws, request, streams, (combined, microseconds), self.index.changed)
        self.connections.add(conn)
        self.index.changed()
        sender = asyncio.create_task(self._send(conn))
        try:
            await self._receive(conn)
        finally:
            self.connections.discard(conn)
            self.index.changed()
            sender.cancel()
        return ws

    def _admitted(self, request: web.Request) -> tuple[list[str], bool, bool]:
        """The streams asked for in the URL, whether combined, whether in microseconds; or a refusal."""
        streams, combined = requested_streams(request.path, request.query.get("streams", ""))
        unit = request.query.get("timeUnit", TIME_UNITS[0]).upper()
        if unit not in TIME_UNITS:
            raise web.HTTPBadRequest(text=f"Invalid timeUnit {request.query['timeUnit']!r}")
        if len(streams) > self.config.max_streams:
            raise web.HTTPBadRequest(text=f"Too many streams: {len(streams)} > {self.config.max_streams}")
        bad = [name for name in streams if not valid_stream_name(name)]
        if bad:
            raise web.HTTPBadRequest(text=f"Invalid stream name {bad[0]!r}")
        if not self._admit(request.remote or "unknown"):
            raise web.HTTPTooManyRequests(text="Too many connection attempts")
        return streams, combined, unit == "MICROSECOND"

    async def _receive(self, conn: Connection) -> None:
        async for message in conn.ws:
            if not self._count_incoming(conn):
                await conn.ws.close(code=1008, message=b"Too many requests")
                return
            if message.type == WSMsgType.PING:
                await conn.ws.pong(message.data)
            elif message.type == WSMsgType.PONG:
                conn.answered(bytes(message.data))
            elif message.type == WSMsgType.TEXT:
                conn.queue.append(
                    json.dumps(control_reply(conn, message.data, self.config.max_streams), separators=(",", ":"))
                )
                conn.wake.set()

    def _admit(self, client: str) -> bool:
        now = time.monotonic()
        attempts = self.attempts.setdefault(client, deque())
        while attempts and now - attempts[0] > CONNECTION_ATTEMPT_WINDOW_SECONDS:
            attempts.popleft()
        attempts.append(now)
        return len(attempts) <= CONNECTION_ATTEMPTS_PER_WINDOW

    def _count_incoming(self, conn: Connection) -> bool:
        now = time.monotonic()
        conn.incoming.append(now)
        while conn.incoming and now - conn.incoming[0] > 1.0:
            conn.incoming.popleft()
        return len(conn.incoming) <= self.config.max_incoming_per_second

    async def _send(self, conn: Connection) -> None:
        while not conn.ws.closed:
            await conn.wake.wait()
            conn.wake.clear()
            while conn.queue and not conn.ws.closed:
                pause = self.stalled_until - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                    continue
                transport = conn.transport
                if transport is None or transport.is_closing():
                    return
                # Many frames per write: framing here is what lets one sandbox core outpace a client.
                count = min(len(conn.queue), _FRAMES_PER_WRITE)
                if conn.malformed_queued:
                    self._write_recording_malformed(conn, transport, count)
                else:  # the stream's hot path: the queue holds plain text only
                    transport.write(b"".join([text_frame(conn.queue.popleft()) for _ in range(count)]))
                while transport.get_write_buffer_size() > _WRITE_BUFFER_HIGH and not transport.is_closing():
                    await asyncio.sleep(0.001)  # the client is behind: wait, as TCP flow control says
                await asyncio.sleep(0)

    def _write_recording_malformed(self, conn: Connection, transport: asyncio.Transport, count: int) -> None:
        """Write the next ``count`` queued frames, and record the malformed ones among them as sent."""
        frames: list[bytes] = []
        malformed: list[MalformedFrame] = []
        for _ in range(count):
            item = conn.queue.popleft()
            if isinstance(item, MalformedFrame):
                malformed.append(item)
                item = item.text
            frames.append(text_frame(item))
        transport.write(b"".join(frames))
        conn.malformed_queued -= len(malformed)
        for frame in malformed:
            self.exchange.record.malformed_sent(frame.kind, frame.text)

    def _drop(self, conn: Connection) -> None:
        """End a connection abruptly, with no close frame, as a broken network does.

        What is still queued is lost. What was written to the socket is still sent, then the end of
        the stream (TCP's FIN), so the client gets every frame the fault record counts as sent; an
        abort would throw away what the socket's buffer still holds. A client that does not read
        that within ``_DROP_FLUSH_SECONDS`` is aborted.
        """
        conn.closing = True
        transport = conn.transport
        if transport is not None:
            transport.close()
            asyncio.get_running_loop().call_later(_DROP_FLUSH_SECONDS, self._abort_unflushed, transport)

    @staticmethod
    def _abort_unflushed(transport: asyncio.Transport) -> None:
        # Only while it still holds data: a transport that has flushed after close() is gone, and
        # asyncio's abort() would then fail.
        if transport.get_write_buffer_size():
            transport.abort()

    def _close(self, conn: Connection, code: int, reason: bytes) -> None:
        """Close with a close frame, without holding up the housekeeping loop."""
        conn.closing = True
        task = asyncio.create_task(conn.ws.close(code=code, message=reason))
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    # Housekeeping ----------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Pings, pong timeouts, lifetimes and the timed faults, checked a few times a second."""
        started = time.monotonic()
        timers = _FaultTimers(started, started)
        while True:
            await asyncio.sleep(_HOUSEKEEPING_SECONDS)
            now = time.monotonic()
            self._timed_faults(timers, now)
            stalled = now < self.stalled_until
            for conn in list(self.connections):
                if not (conn.closing or conn.ws.closed):
                    await self._keep(conn, now, stalled)

    def _timed_faults(self, timers: _FaultTimers, now: float) -> None:
        """Start a stall, or drop every connection, when their period has come round."""
        faults, record = self.exchange.faults, self.exchange.record
        if faults.stall_every and now - timers.last_stall >= faults.stall_every:
            timers.last_stall = now
            self.stalled_until = now + faults.stall_seconds
            record.stalls += 1
        if faults.drop_connections_every and now - timers.last_drop >= faults.drop_connections_every:
            timers.last_drop = now
            for conn in [c for c in self.connections if not c.closing]:
                record.dropped_connections += 1
                self._drop(conn)

    async def _keep(self, conn: Connection, now: float, stalled: bool) -> None:
        """One connection's housekeeping: its lifetime, its pong deadline, its next ping."""
        config = self.config
        if now - conn.opened >= config.lifetime_seconds:
            self._close(conn, 1000, b"connection lifetime reached")
        elif conn.awaiting_pong_since is not None and now - conn.awaiting_pong_since > config.pong_timeout:
            self._close(conn, 1008, b"pong timeout")
        elif not stalled and now - conn.last_ping >= config.ping_interval:
            await conn.ping(now)

    async def shutdown(self) -> None:
        """Tell every client the server is going away, then close: Binance's ``serverShutdown``."""
        event = json.dumps({"e": "serverShutdown", "E": self.exchange.now_us() // 1000}, separators=(",", ":"))
        for conn in list(self.connections):
            if conn.ws.closed:
                continue
            try:
                await conn.ws.send_str(event)
                await conn.ws.close(code=1001, message=b"server shutdown")
            except ConnectionError:
                pass
