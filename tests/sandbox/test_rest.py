"""The sandbox's REST API against Binance's documented behaviour, checked from the outside.

Every expectation here is computed in the test, from trades read over the wire (or straight from
a Binance dump file), with ``decimal.Decimal`` in a context that refuses to round: klines,
aggregates and quote quantities are recomputed, never copied from the sandbox's own code.
"""

from __future__ import annotations

import bisect
import csv
import json
import random
import re
import time
from decimal import Context, Decimal, Inexact, localcontext
from urllib.parse import urlencode

import pytest
from websockets.sync.client import connect

from tests.support.net import http_get
from tests.support.paths import BTCUSDT_DUMP
from tests.support.waiting import wait_until

DECIMAL_8 = re.compile(r"^\d+\.\d{8}$")
EXACT = Context(prec=80, traps=[Inexact])
PAGE = 1000
INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "5m": 5 * 60_000,
    "15m": 15 * 60_000,
    "1h": 3_600_000,
    "4h": 4 * 3_600_000,
    "1d": 86_400_000,
}
# Request weights from Binance's spot API documentation.
DOCUMENTED_WEIGHTS = {
    "ping": 1,
    "time": 1,
    "exchangeInfo": 20,
    "trades": 25,
    "historicalTrades": 25,
    "aggTrades": 4,
    "klines": 2,
}


# Reading the sandbox ---------------------------------------------------------------------------


def url(sandbox, endpoint, **params):
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{sandbox.rest_url}/api/v3/{endpoint}" + (f"?{query}" if query else "")


def get(sandbox, endpoint, headers=None, **params):
    status, _, body = http_get(url(sandbox, endpoint, **params), headers)
    assert status == 200, body
    return body


def server_ms(sandbox):
    return get(sandbox, "time")["serverTime"]


class History:
    """Every trade of a symbol read over historicalTrades, extended on demand."""

    def __init__(self, sandbox, symbol):
        self.sandbox, self.symbol, self.trades = sandbox, symbol, []

    def through(self, ms):
        """All trades up to and including time ``ms`` (and whatever came after, up to now)."""
        wait_until(lambda: server_ms(self.sandbox) > ms, 30, f"the sandbox's clock to pass {ms}")  # the ms is complete
        from_id = self.trades[-1]["id"] + 1 if self.trades else 0
        while True:
            page = get(self.sandbox, "historicalTrades", symbol=self.symbol, fromId=from_id, limit=PAGE)
            self.trades.extend(page)
            if len(page) < PAGE:
                return self.trades
            from_id = page[-1]["id"] + 1

    def now(self):
        return self.through(server_ms(self.sandbox))


def all_pages(sandbox, endpoint, cursor_key, first, **params):
    """Page an endpoint by id (``fromId``) until a short page."""
    rows, cursor = [], first
    while True:
        page = get(sandbox, endpoint, fromId=cursor, limit=PAGE, **params)
        rows.extend(page)
        if len(page) < PAGE:
            return rows
        cursor = page[-1][cursor_key] + 1


def fetch_klines(sandbox, symbol, interval, start, end, headers=None):
    rows, cursor = [], start
    while True:
        page = get(
            sandbox, "klines", headers, symbol=symbol, interval=interval, startTime=cursor, endTime=end, limit=PAGE
        )
        rows.extend(page)
        if len(page) < PAGE:
            return rows
        cursor = page[-1][0] + 1


# Independent recomputation -------------------------------------------------------------------


def dec(text):
    assert DECIMAL_8.match(text), text
    return Decimal(text)


def parse_kline(row):
    assert len(row) == 12, row
    assert [type(v) for v in row] == [int, str, str, str, str, str, int, str, int, str, str, str], row
    return [
        row[0],
        *(dec(v) for v in row[1:6]),
        row[6],
        dec(row[7]),
        row[8],
        dec(row[9]),
        dec(row[10]),
        row[11],
    ]


def candle(open_ms, width, trades, previous_close):
    """One Binance kline from its trades (price/qty strings), or the empty candle."""
    close_time = open_ms + width - 1
    if not trades:
        p = previous_close
        return [open_ms, p, p, p, p, Decimal(0), close_time, Decimal(0), 0, Decimal(0), Decimal(0), "0"]
    with localcontext(EXACT):
        prices = [Decimal(t["price"]) for t in trades]
        qtys = [Decimal(t["qty"]) for t in trades]
        quotes = [p * q for p, q in zip(prices, qtys, strict=True)]
        taker_buys = [not t["isBuyerMaker"] for t in trades]
        return [
            open_ms,
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
            sum(qtys, Decimal(0)),
            close_time,
            sum(quotes, Decimal(0)),
            len(trades),
            sum((q for q, buy in zip(qtys, taker_buys, strict=True) if buy), Decimal(0)),
            sum((q for q, buy in zip(quotes, taker_buys, strict=True) if buy), Decimal(0)),
            "0",
        ]


def check_klines(rows, trades, width, start, end, settled_before, settled_by=None):
    """Compare kline rows with candles recomputed from ``trades`` (every trade from the first on).

    Buckets run from the bucket of the symbol's first trade; those with open time in [start, end]
    are expected. Trades at or after ``settled_before`` (ms) may or may not have existed when the
    klines were read (the market is live); they must all be at or before ``settled_by``, and a
    bucket holding some may count only a prefix of them. Returns the number of empty buckets.
    """
    first_open = trades[0]["time"] - trades[0]["time"] % width
    buckets = {}
    for trade in trades:
        buckets.setdefault(trade["time"] - trade["time"] % width, []).append(trade)
    actual = [parse_kline(row) for row in rows]
    expected, previous_close, empty = [], None, 0
    open_ms = first_open
    while open_ms <= end:
        group = buckets.get(open_ms, [])
        settled = [t for t in group if t["time"] < settled_before]
        if len(settled) != len(group):
            # Live bucket: the sandbox saw the trades up to some moment in [settled_before, settled_by].
            shown = actual[len(expected)][8] if open_ms >= start and len(actual) > len(expected) else len(settled)
            possible = len([t for t in group if settled_by is None or t["time"] <= settled_by])
            assert len(settled) <= shown <= possible, (open_ms, len(settled), shown, possible)
            group = group[:shown]
        row = candle(open_ms, width, group, previous_close)
        previous_close = row[4]
        if open_ms >= start:
            expected.append(row)
            empty += not group
        open_ms += width
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got == want
    return empty


# Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc(history_sandbox):
    history = History(history_sandbox, "BTCUSDT")
    history.now()
    return history


@pytest.fixture(scope="module")
def aggregates(history_sandbox, btc):
    """Every aggregate trade of BTCUSDT so far, and the trades behind them."""
    aggs = all_pages(history_sandbox, "aggTrades", "a", 0, symbol="BTCUSDT")
    trades = list(btc.through(server_ms(history_sandbox)))
    return aggs, trades


# Trades: the stream and history agree ----------------------------------------------------------


def test_history_ids_are_sequential_from_the_first_trade(btc):
    trades = btc.now()
    assert len(trades) > 10_000  # two hours at 2 trades/s
    ids = [t["id"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    times = [t["time"] for t in trades]
    assert times == sorted(times)


def test_rest_and_stream_agree_trade_for_trade(start_sandbox):
    wanted = 250
    symbols = ("BTCUSDT", "ETHUSDT")
    events = {s: [] for s in symbols}
    with start_sandbox(rate=50, symbols=symbols) as sandbox:
        deadline = time.monotonic() + 30
        with connect(f"{sandbox.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade") as ws:
            while min(len(v) for v in events.values()) < wanted:
                remaining = deadline - time.monotonic()
                assert remaining > 0, {s: len(v) for s, v in events.items()}
                message = json.loads(ws.recv(timeout=remaining))
                data = message["data"]
                assert message["stream"] == f"{data['s'].lower()}@trade"
                events[data["s"]].append(data)
        history = {}
        for symbol in symbols:
            first, last = events[symbol][0]["t"], events[symbol][-1]["t"]
            rows = []
            while not rows or rows[-1]["id"] < last:
                page = get(sandbox, "historicalTrades", symbol=symbol, fromId=first if not rows else rows[-1]["id"] + 1)
                assert page
                rows.extend(page)
            history[symbol] = rows
    for symbol in symbols:
        stream = events[symbol]
        ids = [e["t"] for e in stream]
        assert ids == list(range(ids[0], ids[0] + len(ids))), f"{symbol}: gap or reorder in the stream"
        rest_rows = {row["id"]: row for row in history[symbol]}
        rest_ids = [row["id"] for row in history[symbol]]
        assert rest_ids == list(range(rest_ids[0], rest_ids[0] + len(rest_ids)))
        for event in stream:
            row = rest_rows[event["t"]]
            assert event["s"] == symbol
            assert (row["id"], row["price"], row["qty"], row["time"], row["isBuyerMaker"]) == (
                event["t"],
                event["p"],
                event["q"],
                event["T"],
                event["m"],
            )


def test_replayed_history_is_the_dump_file(start_sandbox):
    with BTCUSDT_DUMP.open(newline="") as lines:
        dump = list(csv.reader(lines))
    with start_sandbox(symbols=("BTCUSDT",), replay=(BTCUSDT_DUMP,), replay_mode="historical") as sandbox:
        rows = all_pages(sandbox, "historicalTrades", "id", 0, symbol="BTCUSDT")
    assert len(rows) == len(dump)
    for row, line in zip(rows, dump, strict=True):
        trade_id, price, qty, quote, when, buyer_maker, best_match = line
        assert row == {
            "id": int(trade_id),
            "price": f"{Decimal(price):.8f}",
            "qty": f"{Decimal(qty):.8f}",
            "quoteQty": f"{Decimal(quote):.8f}",
            "time": int(when),
            "isBuyerMaker": buyer_maker == "True",
            "isBestMatch": best_match == "True",
        }


def test_recent_trades_are_the_newest_of_history(history_sandbox, btc):
    recent = get(history_sandbox, "trades", symbol="BTCUSDT", limit=50)
    assert len(recent) == 50
    trades = btc.now()
    by_id = {t["id"]: t for t in trades}
    assert [by_id[row["id"]] for row in recent] == recent
    # They are the newest: nothing older than the first of them is missing between them.
    assert [row["id"] for row in recent] == list(range(recent[0]["id"], recent[0]["id"] + 50))
    assert recent[-1]["id"] >= trades[-1]["id"] - 50  # at most a few new trades since


def test_historical_trades_from_id_and_default_limit(history_sandbox, btc):
    trades = btc.now()
    middle = trades[len(trades) // 2]["id"]
    page = get(history_sandbox, "historicalTrades", symbol="BTCUSDT", fromId=middle)
    assert len(page) == 500  # Binance's default limit
    index = len(trades) // 2
    assert page == trades[index : index + 500]


# Exact decimals ------------------------------------------------------------------------------


def filters_of(info):
    out = {}
    for symbol in info["symbols"]:
        by_type = {f["filterType"]: f for f in symbol["filters"]}
        out[symbol["symbol"]] = (by_type["PRICE_FILTER"], by_type["LOT_SIZE"])
    return out


def test_prices_and_quantities_sit_on_the_tick_and_step_grid(start_sandbox):
    symbols = ("BTCUSDT", "XRPUSDT", "XRPETH", "SOLUSDT")
    with start_sandbox(symbols=symbols, rate=10, history_seconds=120) as sandbox:
        info = get(sandbox, "exchangeInfo")
        one = get(sandbox, "exchangeInfo", symbol="XRPETH")
        trades = {s: all_pages(sandbox, "historicalTrades", "id", 0, symbol=s) for s in symbols}
        aggs = {s: all_pages(sandbox, "aggTrades", "a", 0, symbol=s) for s in symbols}
    filters = filters_of(info)
    assert set(filters) == set(symbols)
    assert [s["symbol"] for s in one["symbols"]] == ["XRPETH"]
    ticks = set()
    for symbol in symbols:
        price_filter, lot_size = filters[symbol]
        tick, step = dec(price_filter["tickSize"]), dec(lot_size["stepSize"])
        min_price, min_qty = dec(price_filter["minPrice"]), dec(lot_size["minQty"])
        ticks.add(tick)
        assert tick > 0
        assert step > 0
        assert len(trades[symbol]) > 100
        for trade in trades[symbol]:
            price, qty = dec(trade["price"]), dec(trade["qty"])
            assert price % tick == 0, (symbol, price, tick)
            assert qty % step == 0, (symbol, qty, step)
            assert price >= min_price
            assert qty >= min_qty
        for agg in aggs[symbol]:
            assert dec(agg["p"]) % tick == 0
            assert dec(agg["q"]) % step == 0
    assert len(ticks) > 1  # the symbols do not all share one tick size


def test_quote_quantity_is_price_times_quantity_exactly(start_sandbox):
    symbols = ("BTCUSDT", "ETHUSDT", "XRPUSDT", "XRPETH")
    with start_sandbox(symbols=symbols, rate=10, history_seconds=120) as sandbox:
        trades = {s: all_pages(sandbox, "historicalTrades", "id", 0, symbol=s) for s in symbols}
    with localcontext(EXACT):
        for symbol, rows in trades.items():
            assert rows, symbol
            for row in rows:
                assert dec(row["quoteQty"]) == dec(row["price"]) * dec(row["qty"]), (symbol, row)


# Klines --------------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", list(INTERVAL_MS))
def test_klines_equal_candles_recomputed_from_history(history_sandbox, btc, interval):
    width = INTERVAL_MS[interval]
    first_time = btc.trades[0]["time"]
    settled_before = server_ms(history_sandbox)
    end = settled_before - settled_before % width  # the bucket being filled now is the last one
    # startTime 0: buckets start at the symbol's first trade, not at 0.
    rows = fetch_klines(history_sandbox, "BTCUSDT", interval, 0, end)
    settled_by = server_ms(history_sandbox)
    trades = btc.through(settled_by)
    assert rows[0][0] == first_time - first_time % width
    assert rows[-1][0] == end
    empty = check_klines(rows, trades, width, 0, end, settled_before, settled_by)
    if interval == "1s":
        assert empty > 100  # at 2 trades/s many seconds are empty: they are checked too


def test_klines_window_with_start_and_end_inside_history(history_sandbox, btc):
    width = INTERVAL_MS["1m"]
    trades = btc.now()
    first_open = trades[0]["time"] - trades[0]["time"] % width
    start, end = first_open + 17 * width, first_open + 42 * width
    # startTime in the middle of a bucket: the first kline is the next one to open.
    rows = get(history_sandbox, "klines", symbol="BTCUSDT", interval="1m", startTime=start - width // 2, endTime=end)
    assert check_klines(rows, trades, width, start, end, settled_before=end + width) == 0
    limited = get(history_sandbox, "klines", symbol="BTCUSDT", interval="1m", startTime=start, endTime=end, limit=7)
    assert limited == rows[:7]


def test_klines_without_start_are_the_most_recent(history_sandbox):
    width = INTERVAL_MS["1m"]
    before = server_ms(history_sandbox)
    rows = get(history_sandbox, "klines", symbol="BTCUSDT", interval="1m", limit=5)
    after = server_ms(history_sandbox)
    assert len(rows) == 5
    assert rows[-1][0] in {before - before % width, after - after % width}
    assert [r[0] for r in rows] == [rows[0][0] + i * width for i in range(5)]


def test_klines_of_a_replayed_dump_including_empty_buckets(start_sandbox):
    """Fixed data (2021-01-08, 46 s of real Binance trades): every interval, the 1d one whole."""
    with BTCUSDT_DUMP.open(newline="") as lines:
        trades = [
            {"id": int(r[0]), "price": r[1], "qty": r[2], "time": int(r[4]), "isBuyerMaker": r[5] == "True"}
            for r in csv.reader(lines)
        ]
    with start_sandbox(symbols=("BTCUSDT",), replay=(BTCUSDT_DUMP,), replay_mode="historical") as sandbox:
        for interval, width in INTERVAL_MS.items():
            first_open = trades[0]["time"] - trades[0]["time"] % width
            end = first_open + (90 if interval == "1s" else 5) * width  # then only empty buckets
            rows = fetch_klines(sandbox, "BTCUSDT", interval, 0, end)
            empty = check_klines(rows, trades, width, 0, end, settled_before=end + width)
            assert empty >= 5, interval
            assert rows[0][0] == first_open


def test_klines_in_microseconds(history_sandbox, btc):
    micro = {"X-MBX-TIME-UNIT": "MICROSECOND"}
    width = INTERVAL_MS["1m"]
    trades = btc.now()
    first_open = trades[0]["time"] - trades[0]["time"] % width
    start, end = first_open + 3 * width, first_open + 30 * width
    millis = get(history_sandbox, "klines", symbol="BTCUSDT", interval="1m", startTime=start, endTime=end)
    micros = get(
        history_sandbox, "klines", micro, symbol="BTCUSDT", interval="1m", startTime=start * 1000, endTime=end * 1000
    )
    assert len(micros) == len(millis) == 28
    for ms_row, us_row in zip(millis, micros, strict=True):
        assert us_row[0] == ms_row[0] * 1000
        assert us_row[6] == us_row[0] + width * 1000 - 1
        assert us_row[1:6] == ms_row[1:6]
        assert us_row[7:] == ms_row[7:]
    # startTime is read in µs too: one µs past an open time skips that kline.
    shifted = get(
        history_sandbox, "klines", micro, symbol="BTCUSDT", interval="1m", startTime=start * 1000 + 1, limit=1
    )
    assert shifted[0][0] == (start + width) * 1000


def test_trades_in_microseconds(history_sandbox, btc):
    trades = btc.now()
    from_id = trades[100]["id"]
    micros = get(
        history_sandbox, "historicalTrades", {"X-MBX-TIME-UNIT": "MICROSECOND"}, symbol="BTCUSDT", fromId=from_id
    )
    assert [row["id"] for row in micros] == [t["id"] for t in trades[100:600]]
    for row, trade in zip(micros, trades[100:600], strict=True):
        assert row["time"] // 1000 == trade["time"]
        assert {k: v for k, v in row.items() if k != "time"} == {k: v for k, v in trade.items() if k != "time"}
    assert any(row["time"] % 1000 for row in micros)  # real microsecond precision, not ms x 1000


# Aggregate trades ----------------------------------------------------------------------------


def test_aggregates_partition_the_trades(aggregates):
    aggs, trades = aggregates
    by_id = {t["id"]: t for t in trades}
    assert aggs[0]["f"] == trades[0]["id"]
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
    merged = 0
    for previous, agg in zip([None, *aggs], aggs, strict=False):
        assert list(agg) == ["a", "p", "q", "f", "l", "T", "m", "M"]
        if previous is not None:
            assert agg["f"] == previous["l"] + 1, "aggregates must cover every trade exactly once"
        assert agg["f"] <= agg["l"]
        members = [by_id[i] for i in range(agg["f"], agg["l"] + 1)]
        merged += len(members) > 1
        assert {t["price"] for t in members} == {agg["p"]}
        assert {t["time"] for t in members} == {agg["T"]}
        assert {t["isBuyerMaker"] for t in members} == {agg["m"]}
        with localcontext(EXACT):
            assert sum((dec(t["qty"]) for t in members), Decimal(0)) == dec(agg["q"])
    assert merged > 10  # some aggregates hold several trades, so the sums are exercised
    assert aggs[-1]["l"] >= trades[-1]["id"] - 20  # the aggregates reach the end of history


def test_agg_trades_from_id(history_sandbox, aggregates):
    aggs, _ = aggregates
    first = aggs[0]["a"]  # the market began long before this sandbox: ids carry on from the past
    for index in (0, 1, 77, len(aggs) // 2, len(aggs) - 3):
        expected = aggs[index : index + 5]
        got = get(history_sandbox, "aggTrades", symbol="BTCUSDT", fromId=first + index, limit=5)
        assert got[: len(expected)] == expected
        assert len(got) >= len(expected)
    assert get(history_sandbox, "aggTrades", symbol="BTCUSDT", fromId=first) == aggs[:500]  # default limit 500
    # An id before anything this sandbox serves starts at its first aggregate.
    assert get(history_sandbox, "aggTrades", symbol="BTCUSDT", fromId=0, limit=3) == aggs[:3]


def test_agg_trades_start_time_finds_the_first_trade_id_at_or_after(history_sandbox, aggregates):
    aggs, trades = aggregates
    times = [t["time"] for t in trades]
    agg_of_trade = {i: agg for agg in aggs for i in range(agg["f"], agg["l"] + 1)}
    rng = random.Random(20240618)
    last_settled = times[-1] - 5_000
    probes = [times[0] - 60_000, times[0], times[0] + 1]
    for _ in range(40):
        t = rng.choice(times[: bisect.bisect_left(times, last_settled)])
        probes += [t - 1, t, t + 1]
    probes += [rng.randrange(times[0], last_settled) for _ in range(20)]
    for probe in probes:
        expected_first = trades[bisect.bisect_left(times, probe)]["id"]
        got = get(history_sandbox, "aggTrades", symbol="BTCUSDT", startTime=probe, limit=1)
        assert len(got) == 1
        assert got[0]["f"] == expected_first, probe
        assert got[0] == agg_of_trade[expected_first]
    # Past the last trade there is nothing (yet).
    future = server_ms(history_sandbox) + 3_600_000
    assert get(history_sandbox, "aggTrades", symbol="BTCUSDT", startTime=future, limit=1) == []


def test_agg_trades_between_start_and_end_time_inclusive(history_sandbox, aggregates):
    aggs, trades = aggregates
    rng = random.Random(7)
    for _ in range(12):
        i = rng.randrange(0, len(trades) - 2_000)
        j = i + rng.randrange(50, 400)
        start, end = trades[i]["time"], trades[j]["time"]  # both ends fall on trade times
        expected = [a for a in aggs if start <= a["T"] <= end]
        assert expected[-1]["T"] == end
        got = get(history_sandbox, "aggTrades", symbol="BTCUSDT", startTime=start, endTime=end, limit=1000)
        assert got == expected
        assert (
            get(history_sandbox, "aggTrades", symbol="BTCUSDT", startTime=start, endTime=end, limit=3) == expected[:3]
        )


def test_agg_trades_in_microseconds(history_sandbox, aggregates):
    aggs, _ = aggregates
    micro = {"X-MBX-TIME-UNIT": "MICROSECOND"}
    sample = get(history_sandbox, "aggTrades", micro, symbol="BTCUSDT", fromId=aggs[1000]["a"], limit=50)
    assert [a["a"] for a in sample] == [a["a"] for a in aggs[1000:1050]]
    for us_agg, ms_agg in zip(sample, aggs[1000:1050], strict=True):
        assert us_agg["T"] // 1000 == ms_agg["T"]
    # startTime in µs: an aggregate's exact time finds the first aggregate of that microsecond (a
    # sweep at several prices makes several), one µs later the first of a later microsecond.
    assert len({a["T"] for a in sample}) > 20
    for us_agg in sample[10:30]:  # the expected answers lie in the sample (a sweep is a few levels)
        at = get(history_sandbox, "aggTrades", micro, symbol="BTCUSDT", startTime=us_agg["T"], limit=1)
        after = get(history_sandbox, "aggTrades", micro, symbol="BTCUSDT", startTime=us_agg["T"] + 1, limit=1)
        assert at == [next(a for a in sample if a["T"] >= us_agg["T"])]
        assert after == [next(a for a in sample if a["T"] > us_agg["T"])]


# Errors --------------------------------------------------------------------------------------

ILLEGAL_SYMBOL = "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."


@pytest.mark.parametrize(
    ("path", "code", "msg"),
    [
        ("trades?symbol=NOSUCHCOIN", -1121, "Invalid symbol."),
        ("historicalTrades?symbol=NOSUCHCOIN", -1121, "Invalid symbol."),
        ("klines?symbol=NOSUCHCOIN&interval=1m", -1121, "Invalid symbol."),
        ("exchangeInfo?symbol=NOSUCHCOIN", -1121, "Invalid symbol."),
        ("trades", -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
        ("aggTrades?symbol=", -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
        ("klines?symbol=BTCUSDT", -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."),
        ("trades?symbol=btcusdt", -1100, ILLEGAL_SYMBOL),
        ("klines?symbol=BTCUSDT&interval=7m", -1120, "Invalid interval."),
        ("klines?symbol=BTCUSDT&interval=1min", -1120, "Invalid interval."),
        (
            "trades?symbol=BTCUSDT&limit=ten",
            -1100,
            "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
        ),
        ("klines?symbol=BTCUSDT&interval=1m&limit=0", -1130, "Data sent for parameter 'limit' is not valid."),
        ("trades?symbol=BTCUSDT&limit=0", -1130, "Data sent for parameter 'limit' is not valid."),
        ("aggTrades?symbol=BTCUSDT&startTime=2000&endTime=1000", -1023, "Start time is greater than end time."),
        (
            "klines?symbol=BTCUSDT&interval=1m&startTime=2000&endTime=1000",
            -1023,
            "Start time is greater than end time.",
        ),
        ("aggTrades?symbol=BTCUSDT&fromId=5&startTime=1000", -1128, "Combination of optional parameters invalid."),
        ("aggTrades?symbol=BTCUSDT&fromId=5&endTime=1000", -1128, "Combination of optional parameters invalid."),
        (
            "trades?symbol=BTCUSDT&foo=1",
            -1104,
            "Not all sent parameters were read; read '1' parameter(s) but was sent '2'.",
        ),
        ("ping?x=1", -1104, "Not all sent parameters were read; read '0' parameter(s) but was sent '1'."),
    ],
)
def test_binance_error_bodies(history_sandbox, path, code, msg):
    status, headers, body = http_get(f"{history_sandbox.rest_url}/api/v3/{path}")
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert body == {"code": code, "msg": msg}


def test_unknown_endpoint_is_404(history_sandbox):
    status, _, _ = http_get(f"{history_sandbox.rest_url}/api/v3/nosuchendpoint?symbol=BTCUSDT")
    assert status == 404


# Request weight ------------------------------------------------------------------------------

VALID_REQUESTS = {
    "ping": {},
    "time": {},
    "exchangeInfo": {},
    "trades": {"symbol": "BTCUSDT", "limit": 5},
    "historicalTrades": {"symbol": "BTCUSDT", "limit": 5},
    "aggTrades": {"symbol": "BTCUSDT", "limit": 5},
    "klines": {"symbol": "BTCUSDT", "interval": "1m", "limit": 5},
}


def used_weight(headers):
    assert headers["X-MBX-USED-WEIGHT"] == headers["X-MBX-USED-WEIGHT-1M"]
    return int(headers["X-MBX-USED-WEIGHT-1M"])


def test_used_weight_grows_by_the_documented_weight(start_sandbox):
    # A window far longer than the test, so no window boundary falls inside it.
    with start_sandbox(weight_window_seconds=1e9) as sandbox:
        _, headers, _ = http_get(url(sandbox, "ping"))
        used = used_weight(headers)
        assert used == DOCUMENTED_WEIGHTS["ping"]
        for _ in range(2):
            for endpoint, params in VALID_REQUESTS.items():
                status, headers, _ = http_get(url(sandbox, endpoint, **params))
                assert status == 200
                now_used = used_weight(headers)
                assert now_used - used == DOCUMENTED_WEIGHTS[endpoint], endpoint
                used = now_used
        info = get(sandbox, "exchangeInfo")
    weight_limits = [r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
    assert weight_limits == [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}]


def test_exceeding_the_weight_limit_gives_429_then_418(start_sandbox):
    with start_sandbox(weight_limit=60, weight_window_seconds=1e9) as sandbox:
        trades = url(sandbox, "trades", symbol="BTCUSDT", limit=1)
        statuses = [http_get(trades)[0] for _ in range(2)]
        assert statuses == [200, 200]  # 50 of 60
        status, headers, body = http_get(trades)  # 75 > 60
        assert status == 429
        assert int(headers["Retry-After"]) > 0
        assert body["code"] == -1003
        assert "Too much request weight used" in body["msg"]
        # A client that ignores the 429 and keeps going is banned.
        for _ in range(10):
            status, headers, body = http_get(url(sandbox, "ping"))
            if status != 429:
                break
        assert status == 418
        assert int(headers["Retry-After"]) > 0
        assert body["code"] == -1003
        assert "banned" in body["msg"]
        status, headers, _ = http_get(url(sandbox, "time"))  # still banned
        assert status == 418
        assert int(headers["Retry-After"]) > 0


def test_weight_resets_with_the_window(start_sandbox):
    with start_sandbox(weight_limit=60, weight_window_seconds=2) as sandbox:
        info = url(sandbox, "exchangeInfo")
        for _ in range(10):
            status, headers, _ = http_get(info)
            if status == 429:
                break
        assert status == 429
        retry_after = int(headers["Retry-After"])
        assert 1 <= retry_after <= 2
        window = sandbox.exchange.now_us() // 2_000_000
        # A client that waits as told: until the exchange's clock is in the next window.
        wait_until(lambda: sandbox.exchange.now_us() // 2_000_000 > window, 30, "the next weight window")
        status, headers, _ = http_get(url(sandbox, "ping"))  # a client that waited as told
        assert status == 200
        assert used_weight(headers) == DOCUMENTED_WEIGHTS["ping"]
