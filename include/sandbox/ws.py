"""Binance spot WebSocket market streams: raw ``/ws/<stream>`` and combined ``/stream?streams=``.

Payloads are byte-for-byte Binance's trade events. The server pings every ``ping_interval`` and
drops a connection whose pong is ``pong_timeout`` late, ends connections at their lifetime, limits
streams per connection and incoming messages per second, and sends ``serverShutdown`` before a
graceful stop. Faults (skipped messages, malformed frames, stalls, dropped connections) are applied
here, per connection, and recorded on the exchange.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from include.binance.protocol import CONNECTION_ATTEMPT_WINDOW_SECONDS, CONNECTION_ATTEMPTS_PER_WINDOW
from include.decimals import format_units
from include.sandbox.exchange import Exchange
from include.sandbox.faults import MALFORMED_KINDS, malformed_frame
from include.sandbox.store import Trade

_STREAM_NAME = re.compile(r"^[a-z0-9]+@[A-Za-z0-9_]+$")
_REQUEST_ID_TEXT = re.compile(r"^[A-Za-z0-9]{0,36}$")
_MAX_QUEUED_FRAMES = 2_000_000  # a client this far behind is dropped, as Binance drops slow readers


_FRAMES_PER_WRITE = 2000
_WRITE_BUFFER_HIGH = 4 << 20


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


def _valid_request_id(value: object) -> bool:
    """Binance accepts a 64-bit signed integer, an alphanumeric string of at most 36, or null."""
    if value is None:
        return True
    if isinstance(value, str):
        return _REQUEST_ID_TEXT.match(value) is not None
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


class Connection:
    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, streams: list[str], combined: bool, micro: bool
    ) -> None:
        self.ws = ws
        self.transport = request.transport
        self.streams: list[str] = streams
        self.combined = combined
        self.microseconds = micro
        self.opened = time.monotonic()
        self.queue: deque[str] = deque()
        self.wake = asyncio.Event()
        self.last_ping = self.opened
        self.awaiting_pong_since: float | None = None
        self.ping_payloads: set[bytes] = set()  # pings not yet answered with a copy of their payload
        self.incoming: deque[float] = deque()
        self.closing = False

    def symbols(self) -> set[str]:
        return {name.split("@", 1)[0].upper() for name in self.streams if name.endswith("@trade")}


class StreamHub:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.config = exchange.config
        self.connections: set[Connection] = set()
        self.stalled_until = 0.0
        self.attempts: dict[str, deque[float]] = {}
        self._closing_tasks: set[asyncio.Task[None]] = set()
        exchange.listeners.append(self.publish)

    # Publishing ------------------------------------------------------------------------------

    def publish(self, new: dict[str, list[Trade]]) -> None:
        if not self.connections:
            return
        event_time = self.exchange.now_us()
        faults, rng, record = self.exchange.faults, self.exchange.rng, self.exchange.record
        for symbol, trades in new.items():
            subscribers = [c for c in self.connections if symbol in c.symbols()]
            if not subscribers:
                continue
            stream = f"{symbol.lower()}@trade"
            encoded: dict[tuple[bool, bool], list[str]] = {}
            for conn in subscribers:
                key = (conn.microseconds, conn.combined)
                if key not in encoded:
                    when = event_time if conn.microseconds else event_time // 1000
                    events = [trade_event(t, symbol, when, conn.microseconds) for t in trades]
                    if conn.combined:
                        events = [f'{{"stream":"{stream}","data":{event}}}' for event in events]
                    encoded[key] = events
                frames = encoded[key]
                if faults.skip_fraction or faults.malformed_fraction:
                    frames = self._with_faults(frames, trades, symbol, rng, record)
                conn.queue.extend(frames)
                if len(conn.queue) > _MAX_QUEUED_FRAMES:
                    self._drop(conn)
                conn.wake.set()

    def _with_faults(self, frames: list[str], trades: list[Trade], symbol: str, rng: Any, record: Any) -> list[str]:
        faults = self.exchange.faults
        out = []
        for frame, trade in zip(frames, trades, strict=True):
            if faults.malformed_fraction and rng.random() < faults.malformed_fraction:
                kind = rng.choice(MALFORMED_KINDS)
                record.malformed[kind] += 1
                out.append(malformed_frame(kind, frame, symbol, rng))
            if faults.skip_fraction and rng.random() < faults.skip_fraction:
                record.skipped_ids[symbol].append(trade.trade_id)
                continue
            out.append(frame)
        return out

    # Connections -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        streams, combined = self._requested_streams(request)
        unit = request.query.get("timeUnit", "MILLISECOND").upper()
        if unit not in ("MILLISECOND", "MICROSECOND"):
            raise web.HTTPBadRequest(text=f"Invalid timeUnit {request.query['timeUnit']!r}")
        if len(streams) > self.config.max_streams:
            raise web.HTTPBadRequest(text=f"Too many streams: {len(streams)} > {self.config.max_streams}")
        bad = [name for name in streams if not _STREAM_NAME.match(name)]
        if bad:
            raise web.HTTPBadRequest(text=f"Invalid stream name {bad[0]!r}")
        if not self._admit(request.remote or "unknown"):
            raise web.HTTPTooManyRequests(text="Too many connection attempts")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        conn = Connection(ws, request, streams, combined, unit == "MICROSECOND")
        self.connections.add(conn)
        sender = asyncio.create_task(self._send(conn))
        try:
            async for message in ws:
                if not self._count_incoming(conn):
                    await ws.close(code=1008, message=b"Too many requests")
                    break
                if message.type == WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type == WSMsgType.PONG and bytes(message.data) in conn.ping_payloads:
                    # Only a pong echoing a ping's payload answers it; unsolicited pongs are allowed
                    # but, as on Binance, do not prevent disconnection.
                    conn.awaiting_pong_since = None
                    conn.ping_payloads.clear()
                elif message.type == WSMsgType.TEXT:
                    reply = self._control(conn, message.data)
                    if reply is not None:
                        conn.queue.append(json.dumps(reply, separators=(",", ":")))
                        conn.wake.set()
        finally:
            self.connections.discard(conn)
            sender.cancel()
        return ws

    def _requested_streams(self, request: web.Request) -> tuple[list[str], bool]:
        if request.path.startswith("/stream"):
            raw = request.query.get("streams", "")
            return [name for name in raw.split("/") if name], True
        tail = request.path[len("/ws") :].strip("/")
        return [name for name in tail.split("/") if name], False

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

    def _control(self, conn: Connection, text: str) -> dict[str, object] | None:
        """Binance's JSON control messages: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET/GET_PROPERTY."""
        try:
            request = json.loads(text)
        except json.JSONDecodeError as error:
            return {"code": 3, "msg": f"Invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"}
        if not isinstance(request, dict):
            return {"code": 2, "msg": "Invalid request: expected an object"}
        request_id = request.get("id")
        if not _valid_request_id(request_id):
            return {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer", "id": None}
        method, params = request.get("method"), request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) and _STREAM_NAME.match(p) for p in params):
                return {"code": 2, "msg": "Invalid request: invalid stream name", "id": request_id}
            if method == "SUBSCRIBE":
                added = [p for p in params if p not in conn.streams]
                if len(conn.streams) + len(added) > self.config.max_streams:
                    return {"code": 2, "msg": "Invalid request: too many streams", "id": request_id}
                conn.streams = conn.streams + added
            else:
                conn.streams = [s for s in conn.streams if s not in params]
            return {"result": None, "id": request_id}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(conn.streams), "id": request_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not params or params[0] != "combined":
                return {"code": 0, "msg": "Unknown property", "id": request_id}
            if method == "GET_PROPERTY":
                return {"result": conn.combined, "id": request_id}
            if len(params) != 2 or not isinstance(params[1], bool):
                return {"code": 1, "msg": "Invalid value type: expected Boolean", "id": request_id}
            conn.combined = params[1]
            return {"result": None, "id": request_id}
        return {
            "code": 2,
            "msg": f"Invalid request: unknown variant {method!r}, expected one of SUBSCRIBE, UNSUBSCRIBE, "
            "LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY",
            "id": request_id,
        }

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
                transport.write(b"".join([text_frame(conn.queue.popleft()) for _ in range(count)]))
                while transport.get_write_buffer_size() > _WRITE_BUFFER_HIGH and not transport.is_closing():
                    await asyncio.sleep(0.001)  # the client is behind: wait, as TCP flow control says
                await asyncio.sleep(0)

    def _drop(self, conn: Connection) -> None:
        """End a connection abruptly, with no close frame, as a broken network does."""
        conn.closing = True
        if conn.transport is not None:
            conn.transport.abort()

    def _close(self, conn: Connection, code: int, reason: bytes) -> None:
        """Close with a close frame, without holding up the housekeeping loop."""
        conn.closing = True
        task = asyncio.create_task(conn.ws.close(code=code, message=reason))
        self._closing_tasks.add(task)
        task.add_done_callback(self._closing_tasks.discard)

    # Housekeeping ----------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Pings, pong timeouts, lifetimes and the timed faults, checked a few times a second."""
        config, faults, record = self.config, self.exchange.faults, self.exchange.record
        last_drop = last_stall = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if faults.stall_every and now - last_stall >= faults.stall_every:
                last_stall = now
                self.stalled_until = now + faults.stall_seconds
                record.stalls += 1
            if faults.drop_connections_every and now - last_drop >= faults.drop_connections_every:
                last_drop = now
                for conn in list(self.connections):
                    record.dropped_connections += 1
                    self._drop(conn)
            stalled = now < self.stalled_until
            for conn in list(self.connections):
                if conn.closing or conn.ws.closed:
                    continue
                if now - conn.opened >= config.lifetime_seconds:
                    self._close(conn, 1000, b"connection lifetime reached")
                elif conn.awaiting_pong_since is not None and now - conn.awaiting_pong_since > config.pong_timeout:
                    self._close(conn, 1008, b"pong timeout")
                elif not stalled and now - conn.last_ping >= config.ping_interval:
                    conn.last_ping = now
                    if conn.awaiting_pong_since is None:
                        conn.awaiting_pong_since = now
                    payload = str(int(time.time() * 1000)).encode()
                    conn.ping_payloads.add(payload)
                    await conn.ws.ping(payload)

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
