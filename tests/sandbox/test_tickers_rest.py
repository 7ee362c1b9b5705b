"""The sandbox's ticker endpoints against its own trades and klines, read over the wire.

A sandbox with 26 hours of history is stopped (its clock frozen), so a ticker, the trades and the
klines read after it describe the same market. Every expected figure is recomputed here from the
trades (``tests.support.tickers``), and the 24-hour ticker is also checked against REST's 1m klines.
"""

from __future__ import annotations

import json
from decimal import Context, Decimal, localcontext
from urllib.parse import urlencode

import pytest

from include.sandbox.server import serve_in_thread
from tests.support.exchange import rest_history, sandbox_config
from tests.support.net import MICRO, http_get
from tests.support.paths import BTCUSDT_DUMP
from tests.support.tickers import (
    BOOK_FIELDS,
    FULL_24HR_FIELDS,
    FULL_ROLLING_FIELDS,
    MINI_FIELDS,
    d8,
    expected_window,
    shaped,
)

MINUTE = 60_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def call(sandbox, endpoint, headers=None, **params):
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return http_get(f"{sandbox.rest_url}/api/v3/{endpoint}?{query}", headers)


def get(sandbox, endpoint, headers=None, **params):
    status, _, body = call(sandbox, endpoint, headers, **params)
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def market():
    """A sandbox with 26 hours of history whose clock is stopped, and every trade of each symbol."""
    config = sandbox_config(symbols=SYMBOLS, rate=0.2, history_seconds=26 * 3600, weight_limit=10**9)
    with serve_in_thread(config) as sandbox:
        frozen = sandbox.exchange.now_us()
        sandbox.exchange.clock_us = lambda: frozen
        trades = {symbol: rest_history(sandbox.rest_url, symbol) for symbol in SYMBOLS}
        yield sandbox, frozen // 1000, trades


def minute_floor(ms):
    return ms - ms % MINUTE


# ticker/24hr -----------------------------------------------------------------------------------


def test_24hr_ticker_is_the_last_1440_minutes_of_trades(market):
    sandbox, now_ms, trades = market
    ticker = get(sandbox, "ticker/24hr", symbol="BTCUSDT")
    assert list(ticker) == FULL_24HR_FIELDS
    open_ms = minute_floor(now_ms) - 1439 * MINUTE
    book = get(sandbox, "ticker/bookTicker", symbol="BTCUSDT")
    assert ticker == expected_window("BTCUSDT", trades["BTCUSDT"], open_ms, now_ms, book)
    assert ticker["count"] > 1000
    assert ticker["prevClosePrice"] != "0.00000000"  # there is history before the window


def test_24hr_ticker_sums_the_1m_klines_of_its_window(market):
    sandbox, now_ms, _ = market
    ticker = get(sandbox, "ticker/24hr", symbol="ETHUSDT")
    klines = get(sandbox, "klines", symbol="ETHUSDT", interval="1m", startTime=ticker["openTime"], limit=1000)
    klines += get(sandbox, "klines", symbol="ETHUSDT", interval="1m", startTime=klines[-1][0] + 1, limit=1000)
    assert [k[0] for k in klines] == list(range(ticker["openTime"], minute_floor(now_ms) + 1, MINUTE))
    traded = [k for k in klines if k[8]]
    with localcontext(Context(prec=80)):
        assert ticker["count"] == sum(k[8] for k in klines)
        assert Decimal(ticker["volume"]) == sum(Decimal(k[5]) for k in klines)
        assert Decimal(ticker["quoteVolume"]) == sum(Decimal(k[7]) for k in klines)
        assert Decimal(ticker["highPrice"]) == max(Decimal(k[2]) for k in traded)
        assert Decimal(ticker["lowPrice"]) == min(Decimal(k[3]) for k in traded)
    assert ticker["openPrice"] == traded[0][1]
    assert ticker["lastPrice"] == traded[-1][4]


def test_the_best_bid_is_below_the_last_price_and_the_best_ask_above(market):
    """The FULL ticker's bid and ask are the book's (ticker/bookTicker), either side of the last trade."""
    sandbox, _, _ = market
    for symbol in SYMBOLS:
        ticker = get(sandbox, "ticker/24hr", symbol=symbol)
        book = get(sandbox, "ticker/bookTicker", symbol=symbol)
        assert {name: ticker[name] for name in BOOK_FIELDS} == {name: book[name] for name in BOOK_FIELDS}
        assert Decimal(ticker["bidPrice"]) < Decimal(ticker["lastPrice"]) < Decimal(ticker["askPrice"])
        assert Decimal(ticker["bidQty"]) > 0
        assert Decimal(ticker["askQty"]) > 0


def test_last_price_is_the_last_trade(market):
    sandbox, _, trades = market
    last = get(sandbox, "trades", symbol="BTCUSDT", limit=1)[0]
    assert last == trades["BTCUSDT"][-1]
    assert get(sandbox, "ticker/24hr", symbol="BTCUSDT")["lastPrice"] == last["price"]
    assert get(sandbox, "ticker/price", symbol="BTCUSDT") == {"symbol": "BTCUSDT", "price": last["price"]}


def test_24hr_mini_and_lists(market):
    sandbox, now_ms, trades = market
    open_ms = minute_floor(now_ms) - 1439 * MINUTE
    books = {row["symbol"]: row for row in get(sandbox, "ticker/bookTicker")}
    full = {s: expected_window(s, trades[s], open_ms, now_ms, books[s]) for s in SYMBOLS}
    mini = get(sandbox, "ticker/24hr", symbol="ETHUSDT", type="MINI")
    assert list(mini) == MINI_FIELDS
    assert mini == shaped(full["ETHUSDT"], MINI_FIELDS)
    assert get(sandbox, "ticker/24hr", symbols='["ETHUSDT","BTCUSDT"]') == [
        shaped(full[s], FULL_24HR_FIELDS) for s in ("ETHUSDT", "BTCUSDT")
    ]
    assert get(sandbox, "ticker/24hr", type="MINI") == [shaped(full[s], MINI_FIELDS) for s in SYMBOLS]


def test_24hr_ticker_in_microseconds(market):
    sandbox, now_ms, _ = market
    millis = get(sandbox, "ticker/24hr", symbol="BTCUSDT")
    micros = get(sandbox, "ticker/24hr", headers=MICRO, symbol="BTCUSDT")
    assert micros["openTime"] == millis["openTime"] * 1000
    assert micros["closeTime"] // 1000 == millis["closeTime"] == now_ms


# ticker (rolling window) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_size", "minutes"),
    [("1m", 1), ("7m", 7), ("59m", 59), ("1h", 60), ("5h", 300), ("23h", 1380), ("1d", 1440), ("7d", 7 * 1440)],
)
def test_rolling_window_opens_window_size_before_the_current_minute(market, window_size, minutes):
    sandbox, now_ms, trades = market
    ticker = get(sandbox, "ticker", symbol="BTCUSDT", windowSize=window_size)
    assert list(ticker) == FULL_ROLLING_FIELDS
    open_ms = minute_floor(now_ms) - minutes * MINUTE
    assert ticker == shaped(expected_window("BTCUSDT", trades["BTCUSDT"], open_ms, now_ms), FULL_ROLLING_FIELDS)


def test_rolling_window_defaults_to_a_day_and_takes_lists_and_mini(market):
    sandbox, now_ms, trades = market
    open_ms = minute_floor(now_ms) - 1440 * MINUTE
    full = {s: expected_window(s, trades[s], open_ms, now_ms) for s in SYMBOLS}
    assert get(sandbox, "ticker", symbols='["BTCUSDT","ETHUSDT"]', type="MINI") == [
        shaped(full[s], MINI_FIELDS) for s in SYMBOLS
    ]
    assert get(sandbox, "ticker", symbol="ETHUSDT") == shaped(full["ETHUSDT"], FULL_ROLLING_FIELDS)


# avgPrice and uiKlines -----------------------------------------------------------------------


def test_average_price_is_the_volume_weighted_price_of_the_last_five_minutes(market):
    sandbox, now_ms, trades = market
    recent = [t for t in trades["BTCUSDT"] if t["time"] > now_ms - 5 * MINUTE]
    assert recent
    with localcontext(Context(prec=80)):
        volume = sum(Decimal(t["qty"]) for t in recent)
        price = d8(sum(Decimal(t["price"]) * Decimal(t["qty"]) for t in recent) / volume)
    expected = {"mins": 5, "price": price, "closeTime": trades["BTCUSDT"][-1]["time"]}
    assert get(sandbox, "avgPrice", symbol="BTCUSDT") == expected


def test_ui_klines_are_the_klines(market):
    sandbox, _, _ = market
    params = {"symbol": "ETHUSDT", "interval": "1h", "limit": 30}
    assert get(sandbox, "uiKlines", **params) == get(sandbox, "klines", **params)


# A replayed dump drives the ticker -----------------------------------------------------------


def dump_trades():
    rows = []
    for line in BTCUSDT_DUMP.read_text().splitlines():
        trade_id, price, qty, _, time_ms, maker, _ = line.split(",")
        rows.append({"id": int(trade_id), "price": price, "qty": qty, "time": int(time_ms), "maker": maker == "True"})
    return rows


def test_a_replayed_dump_drives_the_ticker_and_an_empty_window_is_binances(start_sandbox):
    trades = dump_trades()
    with start_sandbox(replay=(BTCUSDT_DUMP,), replay_mode="historical", symbols=()) as sandbox:
        end_ms = trades[-1]["time"] + 90_000
        sandbox.exchange.clock_us = lambda: end_ms * 1000
        open_ms = minute_floor(end_ms) - 1439 * MINUTE
        book = get(sandbox, "ticker/bookTicker", symbol="BTCUSDT")
        assert get(sandbox, "ticker/24hr", symbol="BTCUSDT") == expected_window(
            "BTCUSDT", trades, open_ms, end_ms, book
        )
        assert get(sandbox, "ticker", symbol="BTCUSDT", windowSize="2m") == shaped(
            expected_window("BTCUSDT", trades, minute_floor(end_ms) - 2 * MINUTE, end_ms), FULL_ROLLING_FIELDS
        )
        # A day later the window holds no trade: Binance's answer, the last price as prevClosePrice.
        later_ms = end_ms + 2 * 86_400_000
        sandbox.exchange.clock_us = lambda: later_ms * 1000
        empty = get(sandbox, "ticker/24hr", symbol="BTCUSDT")
        window_ms = minute_floor(later_ms) - 1439 * MINUTE
        assert empty == expected_window("BTCUSDT", trades, window_ms, later_ms, book)  # no trade: the same book
        assert (empty["firstId"], empty["lastId"], empty["count"]) == (-1, -1, 0)
        assert empty["prevClosePrice"] == trades[-1]["price"]
        assert get(sandbox, "avgPrice", symbol="BTCUSDT")["price"] == trades[-1]["price"]


# Weights -------------------------------------------------------------------------------------


def symbols_param(symbols):
    return json.dumps(symbols, separators=(",", ":"))


TWENTY_ONE = symbols_param(["BTCUSDT"] * 21)


@pytest.mark.parametrize(
    ("endpoint", "params", "weight"),
    [
        ("ticker/24hr", {"symbol": "BTCUSDT"}, 2),
        ("ticker/24hr", {"symbols": '["BTCUSDT","ETHUSDT"]'}, 2),
        ("ticker/24hr", {"symbols": TWENTY_ONE}, 40),  # answered -1151, charged all the same
        ("ticker/24hr", {}, 80),
        ("ticker", {"symbol": "BTCUSDT"}, 4),
        ("ticker", {"symbols": '["BTCUSDT","ETHUSDT"]', "windowSize": "7d"}, 8),
        ("ticker", {"symbols": symbols_param(["BTCUSDT"] * 51)}, 200),
        ("ticker/price", {"symbol": "BTCUSDT"}, 2),
        ("ticker/price", {}, 4),
        ("ticker/price", {"symbols": '["BTCUSDT"]'}, 4),
        ("avgPrice", {"symbol": "BTCUSDT"}, 2),
        ("uiKlines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 3}, 2),
    ],
)
def test_used_weight_grows_by_binances_weight(market, endpoint, params, weight):
    sandbox, _, _ = market
    _, before, _ = call(sandbox, "ping")
    _, after, _ = call(sandbox, endpoint, **params)
    assert int(after["X-MBX-USED-WEIGHT-1M"]) - int(before["X-MBX-USED-WEIGHT-1M"]) == weight


# Errors --------------------------------------------------------------------------------------

SYMBOLS_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'


@pytest.mark.parametrize(
    ("endpoint", "params", "code", "msg"),
    [
        ("ticker/24hr", {"symbol": "NOSUCHCOIN"}, -1121, "Invalid symbol."),
        ("ticker/24hr", {"symbols": '["BTCUSDT","NOSUCHCOIN"]'}, -1121, "Invalid symbol."),
        (
            "ticker/24hr",
            {"symbol": "BTCUSDT", "symbols": '["ETHUSDT"]'},
            -1128,
            "Combination of optional parameters invalid. Recommendation: 'symbol' and 'symbols' cannot both be sent.",
        ),
        (
            "ticker/24hr",
            {"symbols": "BTCUSDT"},
            -1100,
            f"Illegal characters found in parameter 'symbols'; legal range is '{SYMBOLS_RANGE}'.",
        ),
        ("ticker/24hr", {"symbols": TWENTY_ONE}, -1151, "Symbol is present multiple times in the list."),
        ("ticker/24hr", {"symbol": "BTCUSDT", "type": "HALF"}, -1139, "Invalid ticker type."),
        ("ticker", {}, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
        (
            "ticker",
            {"symbol": "BTCUSDT", "windowSize": "60m"},
            -1130,
            "Data sent for parameter 'windowSize' is not valid.",
        ),
        (
            "ticker",
            {"symbol": "BTCUSDT", "windowSize": "1d2h"},
            -1130,
            "Data sent for parameter 'windowSize' is not valid.",
        ),
        (
            "ticker",
            {"symbol": "BTCUSDT", "windowSize": "8d"},
            -1130,
            "Data sent for parameter 'windowSize' is not valid.",
        ),
        (
            "ticker",
            {"symbol": "BTCUSDT", "windowSize": "0m"},
            -1130,
            "Data sent for parameter 'windowSize' is not valid.",
        ),
        ("ticker/price", {"symbols": '["NOSUCHCOIN"]'}, -1121, "Invalid symbol."),
        ("avgPrice", {}, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."),
        (
            "ticker/24hr",
            {"symbol": "BTCUSDT", "windowSize": "1d"},
            -1104,
            "Not all sent parameters were read; read '1' parameter(s) but was sent '2'.",
        ),
    ],
)
def test_parameter_errors_are_binances(market, endpoint, params, code, msg):
    sandbox, _, _ = market
    status, headers, body = call(sandbox, endpoint, **params)
    assert (status, body) == (400, {"code": code, "msg": msg})
    assert headers["Content-Type"].startswith("application/json")


def test_more_than_100_symbols_in_a_rolling_ticker_is_refused(market):
    sandbox, _, _ = market
    many = symbols_param([f"COIN{i}USDT" for i in range(101)])
    status, _, body = call(sandbox, "ticker", symbols=many)
    assert (status, body["code"]) == (400, -1101)


@pytest.mark.parametrize("path", ["/api/v3/nosuchendpoint?symbol=BTCUSDT", "/api/v1/ticker", "/", "/wapi/x/y"])
def test_unknown_paths_get_a_json_error(market, path):
    sandbox, _, _ = market
    status, headers, body = http_get(f"{sandbox.rest_url}{path}")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert body == {"code": -1020, "msg": "This operation is not supported."}


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/v3/ticker/24hr"), ("DELETE", "/api/v3/time")])
def test_unsupported_methods_get_a_json_error(market, method, path):
    import urllib.error
    import urllib.request

    sandbox, _, _ = market
    request = urllib.request.Request(f"{sandbox.rest_url}{path}", method=method)
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == 405
    assert error.value.headers["Content-Type"].startswith("application/json")
    assert json.loads(error.value.read()) == {"code": -1020, "msg": "This operation is not supported."}
