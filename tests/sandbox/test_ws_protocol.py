"""The sandbox's WebSocket market streams against Binance spot's documented protocol, over real sockets.

Raw and combined streams, ``timeUnit``, ping/pong and lifetime, ``serverShutdown`` from the real
command line, the per-connection limits and the JSON control messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from include.binance.protocol import MAX_INCOMING_MESSAGES_PER_SECOND
from tests.support.net import free_port, http_get, ws_client
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group
from tests.support.waiting import wait_until

TRADE_FIELDS = {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
DECIMAL_8 = re.compile(r"^[0-9]+\.[0-9]{1,8}$")


# Helpers ------------------------------------------------------------------------------------------


def read_for(ws: ClientConnection, seconds: float) -> list[str]:
    """Every text frame that arrives within ``seconds``."""
    frames: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(ws.recv(timeout=left))
        except TimeoutError:
            break
    return frames


def first_frame(ws: ClientConnection, limit: float = 30) -> str:
    """The next text frame, waiting up to ``limit`` s: a busy machine can stall a sender for a while."""
    return ws.recv(timeout=limit)


def read_until_closed(ws: ClientConnection, limit: float) -> tuple[list[str], ConnectionClosed, float]:
    """Frames until the server ends the connection; the closing exception and when it came."""
    frames: list[str] = []
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the connection was still open after {limit} s")
        try:
            frames.append(ws.recv(timeout=left))
        except TimeoutError:
            continue
        except ConnectionClosed as closed:
            return frames, closed, time.monotonic()


def is_reply(message: Any) -> bool:
    """A control reply or error object, as opposed to a market data event."""
    return isinstance(message, dict) and ("result" in message or "code" in message)


# When each connection's messages were sent: the server counts them in a sliding second.
_SENT: weakref.WeakKeyDictionary[ClientConnection, deque[float]] = weakref.WeakKeyDictionary()
_WINDOW_SECONDS = 1.1  # the server's one-second window, with room for the trip there


def counted(ws: ClientConnection, send: Callable[[], Any]) -> Any:
    """Send a message (text or ping) and note when, as the server counts it."""
    _SENT.setdefault(ws, deque()).append(time.monotonic())
    return send()


def sent_within_window(ws: ClientConnection) -> int:
    sent = _SENT.setdefault(ws, deque())
    while sent and time.monotonic() - sent[0] > _WINDOW_SECONDS:
        sent.popleft()
    return len(sent)


def wait_for_room(ws: ClientConnection, messages: int = 1) -> None:
    """Wait until ``messages`` more fit in Binance's limit of incoming messages per second."""
    room = lambda: sent_within_window(ws) + messages <= MAX_INCOMING_MESSAGES_PER_SECOND  # noqa: E731
    wait_until(room, 10, f"room for {messages} messages within the incoming limit", interval=0.02)


def control(ws: ClientConnection, request: dict[str, Any] | str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send a control message (within the incoming limit); its reply and the data events before it."""
    wait_for_room(ws)
    counted(ws, lambda: ws.send(request if isinstance(request, str) else json.dumps(request)))
    before: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        if is_reply(message):
            return message, before
        before.append(message)
    pytest.fail(f"no reply to {request!r}")


def trades_of(events: list[dict[str, Any]], symbol: str) -> list[dict[str, Any]]:
    """The trade payloads of ``symbol`` among raw or combined events."""
    payloads = [event.get("data", event) for event in events]
    return [p for p in payloads if p.get("s") == symbol]


def assert_contiguous(ids: list[int]) -> None:
    assert ids, "no trades at all"
    assert ids == list(range(ids[0], ids[0] + len(ids))), f"ids not contiguous: {ids[:50]}"


def rest_trades(rest_url: str, symbol: str, from_id: int, headers: dict[str, str] | None = None) -> dict[int, Any]:
    status, _, body = http_get(
        f"{rest_url}/api/v3/historicalTrades?symbol={symbol}&fromId={from_id}&limit=1000", headers
    )
    assert status == 200, body
    return {row["id"]: row for row in body}


# Raw and combined streams ------------------------------------------------------------------------


def test_raw_stream_sends_bare_binance_trade_payloads(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT", "ETHUSDT"), rate=100) as sb:
        with ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws:
            frames = read_for(ws, 1.5)
        events = [json.loads(frame) for frame in frames]
        assert len(events) >= 10
        for event in events:
            assert set(event) == TRADE_FIELDS, event  # no "stream" wrapper, and no b/a since 2024-06-18
            assert event["e"] == "trade"
            assert event["s"] == "BTCUSDT"
            assert isinstance(event["t"], int)
            assert not isinstance(event["t"], bool)
            assert DECIMAL_8.match(event["p"])
            assert DECIMAL_8.match(event["q"])
            assert isinstance(event["m"], bool)
            assert event["M"] is True
            assert event["T"] <= event["E"]
        ids = [event["t"] for event in events]
        assert_contiguous(ids)
        # The stream and REST history are the same trades, field by field.
        history = rest_trades(sb.rest_url, "BTCUSDT", ids[0])
        for event in events:
            row = history[event["t"]]
            assert (row["price"], row["qty"], row["time"], row["isBuyerMaker"]) == (
                event["p"],
                event["q"],
                event["T"],
                event["m"],
            )


def test_combined_stream_wraps_events_with_lower_case_stream_names(start_sandbox):
    with (
        start_sandbox(symbols=("BTCUSDT", "ETHUSDT"), rate=100) as sb,
        ws_client(f"{sb.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade") as ws,
    ):
        frames = read_for(ws, 1.5)
    envelopes = [json.loads(frame) for frame in frames]
    assert envelopes
    for envelope in envelopes:
        assert set(envelope) == {"stream", "data"}, envelope
        assert set(envelope["data"]) == TRADE_FIELDS
        assert envelope["stream"] == envelope["data"]["s"].lower() + "@trade"
        assert envelope["stream"] == envelope["stream"].lower()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert_contiguous([p["t"] for p in trades_of(envelopes, symbol)])


@pytest.mark.parametrize("tail", ["", "/", "/0", "/17", "/my-connection"])
def test_a_connection_path_that_names_no_stream_then_subscribes(start_sandbox, tail):
    """As on Binance, ``/ws`` and ``/ws/<connection number or label>`` open a connection with no
    stream; the client subscribes next (ccxt connects to ``/ws/<n>``)."""
    with start_sandbox(symbols=("BTCUSDT",), rate=50) as sb, ws_client(f"{sb.ws_url}/ws{tail}") as ws:
        reply, _ = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        assert reply == {"result": [], "id": 1}
        reply, before = control(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2})
        assert reply == {"result": None, "id": 2}
        assert before == []  # nothing streamed before the subscription
        reply, events = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert reply == {"result": ["btcusdt@trade"], "id": 3}
        events += [json.loads(frame) for frame in read_for(ws, 1.0)]
        assert all(set(event) == TRADE_FIELDS for event in events)  # raw payloads
        assert_contiguous([p["t"] for p in trades_of(events, "BTCUSDT")])
        reply, _ = control(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 4})
        assert reply == {"result": None, "id": 4}


def test_upper_case_stream_names_are_not_streams(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=100) as sb:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{sb.ws_url}/ws/BTCUSDT@trade", proxy=None, open_timeout=10)
        assert refused.value.response.status_code == 400
        with ws_client(f"{sb.ws_url}/ws") as ws:
            reply, _ = control(ws, {"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 7})
            assert reply["code"] == 2
            assert reply["id"] == 7
            assert read_for(ws, 0.7) == []  # nothing was subscribed
            reply, _ = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 8})
            assert reply == {"result": [], "id": 8}


@pytest.mark.parametrize("unit", ["MICROSECOND", "microsecond"])
def test_time_unit_microsecond_gives_microseconds_in_e_and_t(start_sandbox, unit):
    with start_sandbox(symbols=("BTCUSDT",), rate=100) as sb:
        with ws_client(f"{sb.ws_url}/ws/btcusdt@trade?timeUnit={unit}") as micro_ws:
            with ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as milli_ws:
                milli = {e["t"]: e for e in map(json.loads, read_for(milli_ws, 1.2))}
            micro = {e["t"]: e for e in map(json.loads, read_for(micro_ws, 0.5))}
        now_us = time.time_ns() // 1000
        common = sorted(set(milli) & set(micro))
        assert len(common) >= 5
        for trade_id in common:
            ms, us = milli[trade_id], micro[trade_id]
            # Default milliseconds, microseconds on request: same instants, three more digits.
            assert abs(ms["E"] * 1000 - now_us) < 120e6
            assert abs(ms["T"] * 1000 - now_us) < 120e6
            assert abs(us["E"] - now_us) < 120e6
            assert abs(us["T"] - now_us) < 120e6
            assert us["T"] // 1000 == ms["T"]
            assert us["E"] // 1000 == ms["E"]
            assert (us["p"], us["q"], us["m"]) == (ms["p"], ms["q"], ms["m"])
        # The microsecond trade time is the one REST gives with X-MBX-TIME-UNIT: MICROSECOND.
        history = rest_trades(sb.rest_url, "BTCUSDT", common[0], {"X-MBX-TIME-UNIT": "MICROSECOND"})
        assert all(history[t]["time"] == micro[t]["T"] for t in common)
        assert any(micro[t]["T"] % 1000 for t in common)  # real sub-millisecond digits, not ms * 1000


# Ping, pong, lifetime ----------------------------------------------------------------------------


async def _watch(
    url: str,
    seconds: float,
    answer_pings: bool,
    unsolicited_pong_every: float | None = None,
    until: Callable[[list[float], list[float]], bool] | None = None,
) -> dict[str, Any]:
    """Read a connection without automatic pongs for ``seconds``, or until ``until(pings, texts)``;
    what arrived, and whether and how it closed."""
    pings: list[float] = []
    texts: list[float] = []
    closed_at = close_code = None
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, autoping=False, heartbeat=None, compress=0) as ws,
    ):
        next_pong = started + (unsolicited_pong_every or 0)
        while (now := time.monotonic()) - started < seconds and not (until and until(pings, texts)):
            if unsolicited_pong_every is not None and now >= next_pong:
                await ws.pong(b"")
                next_pong = now + unsolicited_pong_every
            try:
                message = await ws.receive(timeout=0.1)
            except TimeoutError:
                continue
            if message.type == aiohttp.WSMsgType.PING:
                pings.append(time.monotonic() - started)
                if answer_pings:
                    await ws.pong(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                texts.append(time.monotonic() - started)
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                closed_at, close_code = time.monotonic() - started, ws.close_code
                break
    return {"pings": pings, "texts": texts, "closed_at": closed_at, "close_code": close_code}


def test_server_pings_and_a_ponging_client_stays(start_sandbox):
    """Seven pings come at least 6 x ping_interval = 12 s apart from first to last, beyond the 10 s
    pong timeout: had the sandbox not taken the echoed pongs, it would have closed the connection
    instead of sending the seventh (a pong overdue is checked before the next ping)."""

    def seventh_ping_and_data_after(pings: list[float], texts: list[float]) -> bool:
        return len(pings) >= 7 and bool(texts) and texts[-1] > pings[6]

    with start_sandbox(symbols=("BTCUSDT",), rate=50, ping_interval=2, pong_timeout=10) as sb:
        url = f"{sb.ws_url}/ws/btcusdt@trade"
        seen = asyncio.run(_watch(url, 120.0, answer_pings=True, until=seventh_ping_and_data_after))
    assert seen["closed_at"] is None, f"a client that pongs was dropped (code {seen['close_code']}): {seen['pings']}"
    assert seventh_ping_and_data_after(seen["pings"], seen["texts"]), seen["pings"]


def test_client_that_never_pongs_is_dropped_after_pong_timeout(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=50, ping_interval=0.4, pong_timeout=1.0) as sb:
        seen = asyncio.run(_watch(f"{sb.ws_url}/ws/btcusdt@trade", 10.0, answer_pings=False))
    assert seen["closed_at"] is not None, "a client that never pongs was kept"
    assert seen["pings"], "dropped without ever being pinged"
    # Not before pong_timeout has passed since the first unanswered ping.
    assert seen["closed_at"] >= seen["pings"][0] + 1.0 - 0.1, seen
    assert seen["texts"], "no data before the drop"


def test_unsolicited_pongs_do_not_prevent_disconnection(start_sandbox):
    """Binance: "Unsolicited pong frames are allowed, but will not prevent disconnection"."""
    with start_sandbox(symbols=("BTCUSDT",), rate=50, ping_interval=0.4, pong_timeout=1.0) as sb:
        seen = asyncio.run(
            _watch(f"{sb.ws_url}/ws/btcusdt@trade", 10.0, answer_pings=False, unsolicited_pong_every=0.3)
        )
    assert seen["closed_at"] is not None, "empty unsolicited pongs kept a client that never answers pings"
    assert seen["closed_at"] >= seen["pings"][0] + 1.0 - 0.1, seen


def test_connection_is_closed_by_the_server_at_its_lifetime(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=50, lifetime_seconds=1.5) as sb:
        opened = time.monotonic()
        with ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws:
            frames, closed, when = read_until_closed(ws, 20)
        assert frames, "no data before the end of the lifetime"
        assert when - opened >= 1.5 - 0.2, "closed before its lifetime"
        assert closed.rcvd is not None, "the server should close with a close frame, not drop the socket"
        # A new connection is served again: the lifetime is per connection.
        with ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws:
            assert first_frame(ws)


# serverShutdown from the real command line -------------------------------------------------------


@pytest.mark.slow
def test_server_shutdown_event_is_sent_before_close_on_sigterm(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "include.cli", "sandbox", "--port", str(port), "--symbols", "BTCUSDT"]
    log = tmp_path / "sandbox.log"
    with (
        log.open("wb") as out,
        process_group(
            [*command, "--rate", "50"],
            {**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as process,
    ):

        def answers() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return http_get(f"http://127.0.0.1:{port}/api/v3/ping")[0] == 200
            except OSError:
                return False

        wait_until(answers, 60, "the sandbox to come up")
        with ws_client(f"ws://127.0.0.1:{port}/ws/btcusdt@trade") as ws:
            assert json.loads(first_frame(ws))["e"] == "trade", "no trades before the shutdown"
            sent_ms = time.time_ns() // 1_000_000
            process.send_signal(signal.SIGTERM)
            frames, closed, _ = read_until_closed(ws, 30)
        events = [json.loads(frame) for frame in frames]
        shutdowns = [i for i, event in enumerate(events) if event.get("e") == "serverShutdown"]
        assert len(shutdowns) == 1, events[-5:]
        notice = events[shutdowns[0]]
        assert set(notice) == {"e", "E"}
        assert isinstance(notice["E"], int)
        assert abs(notice["E"] - sent_ms) < 60_000
        assert all(event.get("e") == "trade" for event in events[: shutdowns[0]])
        assert closed.rcvd is not None, "the socket was cut without a close frame"
        assert process.wait(timeout=60) == 0, log.read_text()


# Limits ------------------------------------------------------------------------------------------


def _names(count: int) -> list[str]:
    """Distinct trade stream names of realistic length (1024 of them make a URL of about 18 kB)."""
    return [f"sym{i}usdt@trade" for i in range(count - 1)] + ["btcusdt@trade"]


def test_more_than_1024_streams_in_the_url_is_refused(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=50) as sb:
        with ws_client(f"{sb.ws_url}/stream?streams={'/'.join(_names(1024))}") as ws:
            reply, _ = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
            assert len(reply["result"]) == 1024
            assert trades_of([json.loads(f) for f in read_for(ws, 0.5)], "BTCUSDT")
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{sb.ws_url}/stream?streams={'/'.join(_names(1025))}", proxy=None, open_timeout=10)
        assert refused.value.response.status_code == 400
        assert b"Too many streams" in refused.value.response.body


def test_subscribing_beyond_1024_streams_is_refused(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=50) as sb, ws_client(f"{sb.ws_url}/ws") as ws:
        names = _names(1025)
        reply, _ = control(ws, {"method": "SUBSCRIBE", "params": names, "id": 1})
        assert reply["code"] == 2
        assert reply["id"] == 1
        reply, _ = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2})
        assert reply == {"result": [], "id": 2}
        reply, _ = control(ws, {"method": "SUBSCRIBE", "params": names[:1000], "id": 3})
        assert reply == {"result": None, "id": 3}
        reply, _ = control(ws, {"method": "SUBSCRIBE", "params": names[1000:], "id": 4})  # 1000 + 25
        assert reply["code"] == 2
        assert reply["id"] == 4
        reply, _ = control(ws, {"method": "SUBSCRIBE", "params": names[1000:1024], "id": 5})  # 1024 exactly
        assert reply == {"result": None, "id": 5}
        reply, _ = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 6})
        assert sorted(reply["result"]) == sorted(names[:1024])


@pytest.mark.parametrize("kind", ["json", "ping"])
def test_more_than_5_incoming_messages_per_second_closes_the_connection(start_sandbox, kind):
    with start_sandbox(symbols=("BTCUSDT",), rate=20) as sb, ws_client(f"{sb.ws_url}/ws") as ws:

        def send(n: int) -> Any:
            if kind == "json":
                return counted(ws, lambda: ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": n})))
            return counted(ws, lambda: ws.ping(str(n).encode()))

        def burst(numbers: range) -> None:
            """Send them at once; each is answered (a reply, or a pong), so the connection is open."""
            answers = [send(n) for n in numbers]
            if kind == "json":
                assert [json.loads(ws.recv(timeout=10))["id"] for _ in numbers] == list(numbers)
            else:
                assert all(pong.wait(10) for pong in answers)

        burst(range(5))  # five in a burst is within the limit
        wait_for_room(ws, 5)
        burst(range(5, 10))  # once the second has passed, five more are fine too
        reply, _ = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 99})  # still open: answered
        assert reply["id"] == 99
        wait_for_room(ws, 5)
        for n in range(10, 16):  # six within a second: one too many
            send(n)
        _, closed, _ = read_until_closed(ws, 10)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1008


# JSON control messages ---------------------------------------------------------------------------


def test_subscribe_unsubscribe_list_and_combined_property(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT", "ETHUSDT"), rate=50) as sb, ws_client(f"{sb.ws_url}/ws/btcusdt@trade") as ws:
        reply, _ = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        assert reply == {"result": ["btcusdt@trade"], "id": 1}
        reply, _ = control(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2})
        assert reply == {"result": False, "id": 2}

        reply, before = control(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 3})
        assert reply == {"result": None, "id": 3}
        assert not trades_of(before, "ETHUSDT")
        both = [json.loads(frame) for frame in read_for(ws, 1.0)]
        assert all(set(event) == TRADE_FIELDS for event in both)  # still raw payloads
        assert trades_of(both, "ETHUSDT")
        assert trades_of(both, "BTCUSDT")
        reply, tail = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4})
        assert reply["id"] == 4
        assert sorted(reply["result"]) == ["btcusdt@trade", "ethusdt@trade"]

        reply, tail2 = control(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 5})
        assert reply == {"result": None, "id": 5}
        after = [json.loads(frame) for frame in read_for(ws, 1.0)]
        assert not trades_of(after, "BTCUSDT"), "trades still flow after UNSUBSCRIBE"
        assert trades_of(after, "ETHUSDT")

        reply, tail3 = control(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 6})
        assert reply == {"result": None, "id": 6}
        wrapped = [json.loads(frame) for frame in read_for(ws, 1.0)]
        assert wrapped
        assert all(set(e) == {"stream", "data"} and e["stream"] == "ethusdt@trade" for e in wrapped)
        reply, tail4 = control(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 7})
        assert reply == {"result": True, "id": 7}
        reply, _ = control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 8})
        assert reply == {"result": ["ethusdt@trade"], "id": 8}
    # Nothing of ETHUSDT was lost or repeated across the changes.
    eth = trades_of([*both, *tail, *tail2, *after, *tail3, *wrapped, *tail4], "ETHUSDT")
    assert_contiguous([p["t"] for p in eth])


def test_invalid_control_messages_get_error_objects(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=20) as sb, ws_client(f"{sb.ws_url}/ws") as ws:
        steps: list[tuple[dict[str, Any] | str, Any]] = [
            ('{"method": "SUBSCRIBE", "params": [', {"code": 3}),
            ({"method": "FROBNICATE", "params": [], "id": 11}, {"code": 2, "id": 11}),
            ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 12}, {"code": 1}),
            ({"method": "GET_PROPERTY", "params": ["colour"], "id": 13}, {"code": 0, "id": 13}),
            ({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1.5}, {"code": 2}),
            ({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": {"x": 1}}, {"code": 2}),
            ({"method": "SUBSCRIBE", "params": ["btc usdt"], "id": 14}, {"code": 2, "id": 14}),
            ({"method": "LIST_SUBSCRIPTIONS", "id": "not alphanumeric!"}, {"code": 2}),
            ({"method": "LIST_SUBSCRIPTIONS", "id": "x" * 37}, {"code": 2}),
            # Binance accepts ids that are 64-bit signed integers, alphanumeric strings (<= 36) or null.
            ({"method": "LIST_SUBSCRIPTIONS", "id": "abc123"}, {"result": [], "id": "abc123"}),
            ({"method": "LIST_SUBSCRIPTIONS", "id": -5}, {"result": [], "id": -5}),
            ({"method": "LIST_SUBSCRIPTIONS", "id": None}, {"result": [], "id": None}),
        ]
        for request, expected in steps:
            reply, _ = control(ws, request)  # paced: within 5 incoming messages per second
            assert {key: reply.get(key) for key in expected} == expected, (request, reply)
            if "code" in expected:
                assert isinstance(reply.get("msg"), str), reply
                assert reply["msg"], reply
                assert "result" not in reply
        # The connection survived every error and still works.
        reply, _ = control(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 20})
        assert reply == {"result": None, "id": 20}
        assert trades_of([json.loads(f) for f in read_for(ws, 1.0)], "BTCUSDT")
