"""The order book from the outside: REST ``depth`` and ``ticker/bookTicker``, the book streams, and
clients that follow Binance's documented procedure for a local book.

A live replay of a real Binance dump drives the book: after its last trade the book stands still,
so a local book kept from the diff stream can be compared with a REST snapshot of the same update.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.ccxt_client import ccxt_binance
from tests.support.net import admin, http_get, set_faults
from tests.support.paths import BTCUSDT_DUMP
from tests.support.waiting import wait_until

LAST_ID = 553289559  # the dump's last trade
SPEED = 15.0  # the dump's 46 s in about 3 s
SYMBOL = "BTCUSDT"
# Binance's documented weights: depth by limit, the book ticker by how many symbols.
DEPTH_WEIGHTS = {1: 5, 100: 5, 101: 25, 500: 25, 501: 50, 1000: 50, 1001: 250, 5000: 250, 6000: 250}


def rest(sandbox, endpoint: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    return http_get(f"{sandbox.rest_url}/api/v3/{endpoint}?{urlencode(params)}")


def ok(sandbox, endpoint: str, **params: Any) -> Any:
    status, _, body = rest(sandbox, endpoint, **params)
    assert status == 200, body
    return body


def replay_sandbox(start_sandbox):
    return start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="live", speed=SPEED, replay_delay_seconds=1.0, symbols=())


def replay_over(sandbox) -> bool:
    return [trade["id"] for trade in ok(sandbox, "trades", symbol=SYMBOL, limit=1)] == [LAST_ID]


def as_book(snapshot: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    return dict(map(tuple, snapshot["bids"])), dict(map(tuple, snapshot["asks"]))


class LocalBook:
    """Binance's "How to manage a local order book correctly", step by step."""

    def __init__(self, snapshot: dict[str, Any], buffered: list[dict[str, Any]]) -> None:
        self.bids, self.asks = as_book(snapshot)
        self.update_id = snapshot["lastUpdateId"]
        kept = [event for event in buffered if event["u"] > self.update_id]  # drop u <= lastUpdateId
        assert kept, "no buffered event after the snapshot"
        assert kept[0]["U"] <= self.update_id + 1 <= kept[0]["u"]
        for event in kept:
            self.apply(event)

    def apply(self, event: dict[str, Any]) -> None:
        if event["u"] <= self.update_id:
            return
        assert event["U"] <= self.update_id + 1, "an event was missed"
        for side, levels in ((self.bids, event["b"]), (self.asks, event["a"])):
            for price, qty in levels:
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.update_id = event["u"]


class Streams:
    """A combined-stream connection, its events kept per stream in arrival order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: dict[str, list[dict[str, Any]]] = {}

    def receive_until(self, done, what: str, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}"
            try:
                message = json.loads(self.ws.recv(timeout=min(left, 1.0)))
            except TimeoutError:
                continue
            self.events.setdefault(message["stream"], []).append(message["data"])

    def of(self, stream: str) -> list[dict[str, Any]]:
        return self.events.get(stream, [])


def test_a_local_book_from_the_diff_stream_equals_the_snapshot_of_the_same_update(start_sandbox):
    diffs, partial, ticker = "btcusdt@depth@100ms", "btcusdt@depth20", "btcusdt@bookTicker"
    with replay_sandbox(start_sandbox) as sb, connect(f"{sb.ws_url}/stream?streams={diffs}/{partial}/{ticker}") as ws:
        streams = Streams(ws)
        # 1-2: buffer the diff stream until the book is moving, noting the first event's U.
        streams.receive_until(lambda: len(streams.of(diffs)) >= 5, "five diff events")
        first_u = streams.of(diffs)[0]["U"]
        # 3-4: a snapshot, again while it is older than the first buffered event.
        snapshot = ok(sb, "depth", symbol=SYMBOL, limit=5000)
        while snapshot["lastUpdateId"] < first_u:
            snapshot = ok(sb, "depth", symbol=SYMBOL, limit=5000)
        # 5-7: drop what the snapshot has, apply the rest, then every event that follows.
        streams.receive_until(
            lambda: streams.of(diffs)[-1]["u"] > snapshot["lastUpdateId"], "an event after the snapshot"
        )
        applied = len(streams.of(diffs))
        local = LocalBook(snapshot, streams.of(diffs)[:applied])
        wait_until(lambda: replay_over(sb), 30, "the replay's last trade")
        final = ok(sb, "depth", symbol=SYMBOL, limit=5000)
        last_trade = ok(sb, "trades", symbol=SYMBOL, limit=1)[0]
        streams.receive_until(
            lambda: (
                any(e["u"] == final["lastUpdateId"] for e in streams.of(diffs))
                and any(e["lastUpdateId"] == final["lastUpdateId"] for e in streams.of(partial))
            ),
            "the stream to reach the last update",
        )
    for event in streams.of(diffs)[applied:]:
        local.apply(event)

    assert local.update_id == final["lastUpdateId"]
    assert final["lastUpdateId"] > snapshot["lastUpdateId"] + 10  # the diffs moved the book a good deal
    assert (local.bids, local.asks) == as_book(final)
    assert len(final["bids"]) == len(final["asks"]) == 5000
    events = streams.of(diffs)
    assert all(e["e"] == "depthUpdate" and e["s"] == SYMBOL for e in events)
    assert all(later["U"] == earlier["u"] + 1 for earlier, later in itertools.pairwise(events))
    # The best bid is below the last trade's price and the best ask above it.
    assert float(final["bids"][0][0]) < float(last_trade["price"]) < float(final["asks"][0][0])
    # The partial book and the book ticker show the same top as the snapshot.
    top20 = next(e for e in streams.of(partial) if e["lastUpdateId"] == final["lastUpdateId"])
    assert top20 == {"lastUpdateId": final["lastUpdateId"], "bids": final["bids"][:20], "asks": final["asks"][:20]}
    book_ticker = streams.of(ticker)[-1]
    assert book_ticker["u"] <= final["lastUpdateId"]
    assert (book_ticker["s"], [book_ticker["b"], book_ticker["B"]], [book_ticker["a"], book_ticker["A"]]) == (
        SYMBOL,
        final["bids"][0],
        final["asks"][0],
    )


def test_rest_depth_and_book_ticker_weights_and_errors(start_sandbox):
    with start_sandbox(rate=20.0, history_seconds=30, weight_window_seconds=1e9) as sb:
        used = 0

        def charged(endpoint: str, **params: Any) -> tuple[int, int, Any]:
            nonlocal used
            status, headers, body = rest(sb, endpoint, **params)
            now_used = int(headers["X-MBX-USED-WEIGHT-1M"])
            weight, used = now_used - used, now_used
            return status, weight, body

        for limit, weight in DEPTH_WEIGHTS.items():
            status, charged_weight, body = charged("depth", symbol=SYMBOL, limit=limit)
            assert (status, charged_weight) == (200, weight), limit
            assert len(body["bids"]) == len(body["asks"]) == min(limit, 5000)
        status, weight, body = charged("depth", symbol=SYMBOL)
        assert (status, weight, len(body["bids"])) == (200, 5, 100)  # the default limit
        status, weight, one = charged("ticker/bookTicker", symbol=SYMBOL)
        assert (status, weight, sorted(one)) == (200, 2, ["askPrice", "askQty", "bidPrice", "bidQty", "symbol"])
        status, weight, every = charged("ticker/bookTicker")
        assert (status, weight, [row["symbol"] for row in every]) == (200, 4, ["BTCUSDT", "ETHUSDT"])
        status, weight, listed = charged("ticker/bookTicker", symbols='["ETHUSDT"]')
        assert (status, weight, [row["symbol"] for row in listed]) == (200, 4, ["ETHUSDT"])
        for row in [one, *every, *listed]:
            assert Decimal(row["bidPrice"]) < Decimal(row["askPrice"])
        errors = {
            ("depth", "symbol=BTCUSDT&limit=0"): (-1130, "Data sent for parameter 'limit' is not valid."),
            ("depth", "symbol=BTCUSDT&limit=abc"): (
                -1100,
                "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
            ),
            ("depth", "symbol=NOPE"): (-1121, "Invalid symbol."),
            ("depth", ""): (-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
            ("ticker/bookTicker", "symbol=NOPE"): (-1121, "Invalid symbol."),
            ("ticker/bookTicker", 'symbols=["BTCUSDT","NOPE"]'): (-1121, "Invalid symbol."),
            ("ticker/bookTicker", 'symbols=["BTCUSDT","BTCUSDT"]'): (
                -1151,
                "Symbol is present multiple times in the list.",
            ),
            ("ticker/bookTicker", "symbol=BTCUSDT&symbols=[]"): (
                -1128,
                "Combination of optional parameters invalid. "
                "Recommendation: 'symbol' and 'symbols' cannot both be sent.",
            ),
        }
        for (endpoint, query), (code, msg) in errors.items():
            status, _, body = http_get(f"{sb.rest_url}/api/v3/{endpoint}?{query}")
            assert (status, body) == (400, {"code": code, "msg": msg}), (endpoint, query)


def test_ccxt_keeps_the_same_book_as_rest(start_sandbox):
    with replay_sandbox(start_sandbox) as sb:

        async def main() -> tuple[Any, ...]:
            exchange = ccxt_binance(sb)
            # Binance's procedure takes the 5000-level snapshot, ccxt 1000 by default: a book kept
            # from 1000 levels lacks those it never saw once the price has moved past them.
            exchange.options["watchOrderBookLimit"] = 5000
            try:
                await exchange.load_markets()
                await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 30)  # ccxt's own procedure
                while not await asyncio.to_thread(replay_over, sb):
                    await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 30)
                final = await asyncio.to_thread(ok, sb, "depth", symbol=SYMBOL, limit=5000)
                while exchange.orderbooks["BTC/USDT"]["nonce"] < final["lastUpdateId"]:
                    await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 30)
                watched = exchange.orderbooks["BTC/USDT"].limit()
                fetched = await exchange.fetch_order_book("BTC/USDT", 100)
                bids_asks = await exchange.fetch_bids_asks(["BTC/USDT"])
                return final, watched, fetched, bids_asks
            finally:
                await exchange.close()

        final, watched, fetched, bids_asks = asyncio.run(main())

    def floats(levels: list[list[str]]) -> list[list[float]]:
        return [[float(price), float(qty)] for price, qty in levels]

    assert watched["nonce"] == final["lastUpdateId"]
    assert [list(level) for level in watched["bids"]] == floats(final["bids"])
    assert [list(level) for level in watched["asks"]] == floats(final["asks"])
    assert fetched["nonce"] == final["lastUpdateId"]
    assert [list(level) for level in fetched["bids"]] == floats(final["bids"][:100])
    assert [list(level) for level in fetched["asks"]] == floats(final["asks"][:100])
    ticker = bids_asks["BTC/USDT"]
    assert [ticker["bid"], ticker["bidVolume"], ticker["ask"], ticker["askVolume"]] == [
        *floats(final["bids"][:1])[0],
        *floats(final["asks"][:1])[0],
    ]


@pytest.mark.parametrize("unit", ["MILLISECOND", "MICROSECOND"])
def test_raw_depth_streams_carry_binance_payloads(start_sandbox, unit):
    with start_sandbox(rate=50.0, history_seconds=10) as sb:  # trades from the start: the book is not empty
        ok(sb, "depth", symbol=SYMBOL, limit=5)  # the book exists before the streams start
        seen: dict[str, dict[str, Any]] = {}
        with connect(f"{sb.ws_url}/ws/btcusdt@depth@100ms/btcusdt@depth5@100ms?timeUnit={unit}") as ws:
            while len(seen) < 2:  # raw events: told apart by their fields
                event = json.loads(ws.recv(timeout=10))
                seen["diff" if "e" in event else "partial"] = event
        now_ms = ok(sb, "time")["serverTime"]
    diff, partial = seen["diff"], seen["partial"]
    assert sorted(diff) == ["E", "U", "a", "b", "e", "s", "u"]
    assert (diff["e"], diff["s"]) == ("depthUpdate", SYMBOL)
    event_ms = diff["E"] // 1000 if unit == "MICROSECOND" else diff["E"]
    assert now_ms - 10_000 < event_ms <= now_ms
    assert sorted(partial) == ["asks", "bids", "lastUpdateId"]
    assert len(partial["bids"]) == len(partial["asks"]) == 5


def test_a_dropped_connection_drops_its_book_streams_too(start_sandbox):
    with start_sandbox(rate=50.0) as sb, connect(f"{sb.ws_url}/ws/btcusdt@depth@100ms/btcusdt@bookTicker") as ws:
        ws.recv(timeout=10)  # streaming
        set_faults(sb, {"drop_connections_every": 0.2})
        assert closed_within(ws, 30)
        assert admin(sb)["record"]["dropped_connections"] >= 1
        # Nothing keeps feeding the dropped connection's book streams: the hub's subscriptions are the
        # only place the book feeds look, and a dropped connection is gone from them.
        wait_until(lambda: not sb.hub.subscribed(), 10, "the dropped connection's streams to be gone")


def closed_within(ws: ClientConnection, seconds: float) -> bool:
    """Read what comes until the connection ends (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ws.recv(timeout=1)
        except ConnectionClosed:
            return True
        except TimeoutError:
            continue
    return False
