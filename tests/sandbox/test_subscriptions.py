"""The hub's subscription index (``include/sandbox/subscriptions.py``), over real sockets: what the
publishers read stays what the connections subscribe to as they subscribe, unsubscribe and close,
and between changes it is the same object, not a walk over every connection per event."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.support.waiting import wait_until

DIFF, PARTIAL, TICKER = "btcusdt@depth@100ms", "btcusdt@depth5@100ms", "btcusdt@bookTicker"


def book_sandbox(start_sandbox):
    return start_sandbox(rate=50.0, history_seconds=10)  # trades from the start: the book is not empty


def request(ws: ClientConnection, method: str, params: list[str], request_id: int) -> list[dict[str, Any]]:
    """Send a control message; the stream events that came before its reply (the reply must be null)."""
    ws.send(json.dumps({"method": method, "params": params, "id": request_id}))
    before: list[dict[str, Any]] = []
    while "stream" in (message := json.loads(ws.recv(timeout=30))):
        before.append(message)
    assert message == {"result": None, "id": request_id}
    return before


def events(ws: ClientConnection, until_stream: str, count: int) -> list[dict[str, Any]]:
    """Combined events as they come, until ``count`` of ``until_stream`` have arrived."""
    received: list[dict[str, Any]] = []
    while sum(event["stream"] == until_stream for event in received) < count:
        received.append(json.loads(ws.recv(timeout=30)))
    return received


def test_an_unsubscribed_book_stream_sends_no_more_events(start_sandbox):
    with book_sandbox(start_sandbox) as sb, connect(f"{sb.ws_url}/stream?streams={DIFF}/{PARTIAL}") as ws:
        # Both flow first: a diff event comes with nearly every 100 ms round, each tick moving the book.
        wait_until(lambda: any(e["stream"] == DIFF for e in events(ws, PARTIAL, 1)), 30, "a diff event")
        request(ws, "UNSUBSCRIBE", [DIFF], 1)
        # The diff and the partial book are queued in the same round, after the reply: ten rounds of
        # partial books with no diff among them is the diff stream gone, not a quiet book.
        after = events(ws, PARTIAL, 10)
        assert [e["stream"] for e in after if e["stream"] != PARTIAL] == []
        assert DIFF not in sb.hub.subscribed()


def test_a_closed_connection_leaves_the_index(start_sandbox):
    with book_sandbox(start_sandbox) as sb, connect(f"{sb.ws_url}/stream?streams={TICKER}") as staying:
        with connect(f"{sb.ws_url}/stream?streams={TICKER}/{DIFF}") as leaving:
            leaving.recv(timeout=30)
            assert len(sb.hub.index.subscribers(TICKER)) == 2
        wait_until(lambda: len(sb.hub.index.subscribers(TICKER)) == 1, 30, "the closed connection to leave")
        assert DIFF not in sb.hub.subscribed()
        assert events(staying, TICKER, 2)  # the one left still gets its events


def test_the_subscriptions_are_made_once_per_change_not_per_read(start_sandbox):
    with book_sandbox(start_sandbox) as sb, connect(f"{sb.ws_url}/stream?streams={TICKER}") as ws:
        ws.recv(timeout=30)
        first = sb.hub.subscribed()
        assert sb.hub.subscribed() is first  # read at every tick and event: no walk over the connections
        request(ws, "SUBSCRIBE", [PARTIAL], 1)
        changed = sb.hub.subscribed()
        assert changed is not first
        assert sorted(changed) == [TICKER, PARTIAL]
        assert events(ws, PARTIAL, 1)
