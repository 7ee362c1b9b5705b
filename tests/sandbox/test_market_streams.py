"""The sandbox's aggTrade, kline and ticker streams over a real WebSocket, against its REST answers.

Kline closes are made to happen within the test by steering the exchange's clock: a shift of a
minute closes the forming 1m kline, and a replayed dump with the clock moved 32 days on closes a
kline of every interval, up to the month's.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from websockets.sync.client import connect

from include.sandbox.klines import INTERVALS
from tests.support.net import http_get
from tests.support.paths import BTCUSDT_DUMP
from tests.support.waiting import wait_until

DAY_MS = 86_400_000
# A WebSocket kline's fields, with REST's kline column each equals.
KLINE_COLUMNS = {"t": 0, "o": 1, "h": 2, "l": 3, "c": 4, "v": 5, "T": 6, "q": 7, "n": 8, "V": 9, "Q": 10}
# A @ticker event's fields in Binance's order, with the REST ticker/24hr field each equals.
TICKER_FIELDS = {
    "s": "symbol",
    "p": "priceChange",
    "P": "priceChangePercent",
    "w": "weightedAvgPrice",
    "x": "prevClosePrice",
    "c": "lastPrice",
    "Q": "lastQty",
    "b": "bidPrice",
    "B": "bidQty",
    "a": "askPrice",
    "A": "askQty",
    "o": "openPrice",
    "h": "highPrice",
    "l": "lowPrice",
    "v": "volume",
    "q": "quoteVolume",
    "O": "openTime",
    "C": "closeTime",
    "F": "firstId",
    "L": "lastId",
    "n": "count",
}
MINI_TICKER_FIELDS = {k: TICKER_FIELDS[k] for k in ("s", "c", "o", "h", "l", "v", "q")}


def get(sandbox, endpoint, **params):
    status, _, body = http_get(f"{sandbox.rest_url}/api/v3/{endpoint}?{urlencode(params)}")
    assert status == 200, body
    return body


class Collector:
    """Every event of a combined-stream connection, by stream name, read until a condition holds."""

    def __init__(self, ws):
        self.ws, self.events = ws, {}

    def until(self, condition, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not condition(self.events):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            message = json.loads(self.ws.recv(timeout=timeout))
            if "stream" in message:
                self.events.setdefault(message["stream"], []).append(message["data"])


def final(events, stream):
    """The last closed (``x: true``) update of a kline stream."""
    closed = [e["k"] for e in events.get(stream, []) if e["k"]["x"]]
    return closed[-1] if closed else None


def check_closed_kline(sandbox, symbol, kline):
    """A closed kline from the stream equals REST's kline of its open time, and its ids REST's trades."""
    rest = get(sandbox, "klines", symbol=symbol, interval=kline["i"], startTime=kline["t"], limit=1)[0]
    assert rest[0] == kline["t"]
    assert {field: kline[field] for field in KLINE_COLUMNS} == {f: rest[c] for f, c in KLINE_COLUMNS.items()}
    if not kline["n"]:
        assert (kline["f"], kline["L"]) == (-1, -1)
        return
    assert kline["f"] == get(sandbox, "aggTrades", symbol=symbol, startTime=kline["t"], limit=1)[0]["f"]
    last, *after = get(sandbox, "historicalTrades", symbol=symbol, fromId=kline["L"], limit=2)
    assert last["id"] == kline["L"]
    assert last["time"] <= kline["T"]
    assert not after or after[0]["time"] > kline["T"]  # the kline's last trade: the next is after its close


def test_agg_trades_stream_in_order_with_no_loss_and_equal_rest(start_sandbox):
    with start_sandbox(symbols=("BTCUSDT",), rate=50.0) as sandbox:
        with connect(f"{sandbox.ws_url}/ws/btcusdt@aggTrade") as ws:
            streamed = []
            while len(streamed) < 60:
                streamed.append(json.loads(ws.recv(timeout=30)))
        ids = [event["a"] for event in streamed]
        rest = get(sandbox, "aggTrades", symbol="BTCUSDT", fromId=ids[0], limit=len(ids))
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert [{k: e[k] for k in "apqflTmM"} for e in streamed] == rest
    assert all(e["e"] == "aggTrade" and e["s"] == "BTCUSDT" and e["E"] >= e["T"] for e in streamed)


def test_closed_1s_and_1m_klines_equal_rest(start_sandbox):
    shift_us = [0]
    with start_sandbox(symbols=("BTCUSDT",), rate=5.0) as sandbox:
        real_clock = sandbox.exchange.clock_us
        sandbox.exchange.clock_us = lambda: real_clock() + shift_us[0]
        with connect(f"{sandbox.ws_url}/ws") as ws:
            ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@kline_1s", "btcusdt@kline_1m"], "id": 1}))
            assert json.loads(ws.recv(timeout=30)) == {"result": None, "id": 1}
            ws.send(json.dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 2}))
            collector = Collector(ws)
            collector.until(lambda ev: final(ev, "btcusdt@kline_1s"), "a closed 1s kline")
            collector.until(lambda ev: "btcusdt@kline_1m" in ev, "a 1m kline update")
            forming = collector.events["btcusdt@kline_1m"][-1]["k"]["t"]
            shift_us[0] = 60_000_000  # a minute later: the forming 1m kline has closed
            collector.until(lambda ev: final(ev, "btcusdt@kline_1m"), "a closed 1m kline")
        for stream in ("btcusdt@kline_1s", "btcusdt@kline_1m"):
            check_closed_kline(sandbox, "BTCUSDT", final(collector.events, stream))
    closed_1m = final(collector.events, "btcusdt@kline_1m")
    assert closed_1m["t"] == forming
    assert closed_1m["n"] > 0


def test_a_replayed_dump_drives_the_klines_of_every_interval_and_the_ticker(start_sandbox):
    """The dump's trades are all in the past; the clock goes to just after them, then 32 days on."""
    last_ms = int(BTCUSDT_DUMP.read_text().splitlines()[-1].split(",")[4])
    clock_ms = [last_ms + 10_000]
    streams = [f"btcusdt@kline_{interval}" for interval in INTERVALS] + ["btcusdt@ticker"]
    with start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="historical", symbols=()) as sandbox:
        sandbox.exchange.clock_us = lambda: clock_ms[0] * 1000
        url = f"{sandbox.ws_url}/stream?streams={'/'.join(streams)}"
        micro_url = f"{sandbox.ws_url}/stream?streams=btcusdt@kline_1d&timeUnit=MICROSECOND"
        with connect(url) as ws, connect(micro_url) as ws_micro:
            collector, micro = Collector(ws), Collector(ws_micro)
            collector.until(lambda ev: all(s in ev for s in streams), "an update of every stream")
            ticker = collector.events["btcusdt@ticker"][0]
            rest_ticker = get(sandbox, "ticker/24hr", symbol="BTCUSDT")
            clock_ms[0] += 32 * DAY_MS
            collector.until(lambda ev: all(final(ev, s) for s in streams[:-1]), "every interval's closed kline")
            micro.until(lambda ev: final(ev, "btcusdt@kline_1d"), "a closed 1d kline in microseconds")
        for stream in streams[:-1]:
            check_closed_kline(sandbox, "BTCUSDT", final(collector.events, stream))
    assert {field: ticker[field] for field in TICKER_FIELDS} == {
        f: rest_ticker[name] for f, name in TICKER_FIELDS.items()
    }
    assert ticker["n"] == 2001  # the whole dump is within the ticker's day
    # The kline that was forming is the one that closed: 10 s after the dump's last trade, an empty
    # second; in every longer interval, the one holding the whole dump.
    second = final(collector.events, "btcusdt@kline_1s")
    assert (second["t"], second["n"]) == (last_ms + 10_000 - (last_ms + 10_000) % 1000, 0)
    for stream in streams[1:-1]:
        kline = final(collector.events, stream)
        assert kline["t"] <= last_ms <= kline["T"]
        assert kline["n"] == 2001
    day, day_micro = final(collector.events, "btcusdt@kline_1d"), final(micro.events, "btcusdt@kline_1d")
    assert day_micro == {**day, "t": day["t"] * 1000, "T": day["T"] * 1000 + 999}


def test_tickers_over_the_stream_equal_rest(start_sandbox):
    streams = ["btcusdt@ticker", "ethusdt@miniTicker", "!ticker@arr", "!miniTicker@arr"]
    with start_sandbox(rate=2.0, history_seconds=600) as sandbox:
        wait_until(lambda: get(sandbox, "ticker/24hr", symbol="ETHUSDT")["count"], 30, "a trade of ETHUSDT")
        frozen = sandbox.exchange.now_us()
        sandbox.exchange.clock_us = lambda: frozen  # the market stops: the stream and REST see the same
        with connect(f"{sandbox.ws_url}/stream?streams={'/'.join(streams)}") as ws:
            collector = Collector(ws)
            collector.until(lambda ev: all(s in ev for s in streams), "an update of every ticker stream")
        rest = {symbol: get(sandbox, "ticker/24hr", symbol=symbol) for symbol in ("BTCUSDT", "ETHUSDT")}

    def as_rest(event, fields):
        return {name: event[field] for field, name in fields.items()}

    def rest_of(symbol, fields):
        return {name: rest[symbol][name] for name in fields.values()}

    ticker = collector.events["btcusdt@ticker"][-1]
    assert ticker["e"] == "24hrTicker"
    assert list(ticker) == ["e", "E", *TICKER_FIELDS]
    assert as_rest(ticker, TICKER_FIELDS) == rest_of("BTCUSDT", TICKER_FIELDS)
    mini = collector.events["ethusdt@miniTicker"][-1]
    assert mini["e"] == "24hrMiniTicker"
    assert as_rest(mini, MINI_TICKER_FIELDS) == rest_of("ETHUSDT", MINI_TICKER_FIELDS)
    everything = collector.events["!ticker@arr"][0]
    assert [as_rest(e, TICKER_FIELDS) for e in everything] == [
        rest_of(s, TICKER_FIELDS) for s in ("BTCUSDT", "ETHUSDT")
    ]
    minis = collector.events["!miniTicker@arr"][0]
    assert [as_rest(e, MINI_TICKER_FIELDS) for e in minis] == [
        rest_of(s, MINI_TICKER_FIELDS) for s in ("BTCUSDT", "ETHUSDT")
    ]
