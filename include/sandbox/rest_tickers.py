"""The sandbox's ticker endpoints: ``ticker/24hr``, ``ticker`` (rolling window), ``ticker/price``,
``ticker/bookTicker``, ``avgPrice``, and ``uiKlines``, with Binance's parameters, payloads, weights
and errors.

Every figure but the book's comes from the exchange's trade store through ``include.sandbox.tickers``,
so a ticker agrees with the trades and klines REST serves. The best bid and ask (``ticker/bookTicker``
and the FULL ``ticker/24hr``'s bidPrice, bidQty, askPrice, askQty) come from the synthetic order book
(``include.sandbox.book``), always one tick either side of the last price.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from aiohttp import web

from include.binance.protocol import (
    AVG_PRICE_MINUTES,
    BOOK_TICKER_WEIGHT_MANY,
    BOOK_TICKER_WEIGHT_ONE,
    ERROR_DUPLICATE_SYMBOLS,
    ERROR_ILLEGAL_CHARS,
    ERROR_INVALID_PARAM,
    ERROR_INVALID_SYMBOL,
    ERROR_INVALID_TICKER_TYPE,
    ERROR_MANDATORY_PARAM,
    ERROR_PARAM_COMBINATION,
    ERROR_TOO_MANY_PARAMETERS,
    ROLLING_TICKER_CAP_ABOVE_SYMBOLS,
    ROLLING_TICKER_MAX_SYMBOLS,
    ROLLING_TICKER_WEIGHT_CAP,
    ROLLING_TICKER_WEIGHT_PER_SYMBOL,
    ROLLING_WINDOW_DEFAULT,
    SYMBOLS_PARAM_RANGE,
    TICKER_24HR_MINUTES,
    TICKER_24HR_WEIGHT_ALL,
    TICKER_24HR_WEIGHTS,
    TICKER_PRICE_WEIGHT_MANY,
    TICKER_PRICE_WEIGHT_ONE,
    TICKER_TYPES,
    WEIGHTS,
)
from include.decimals import format_units
from include.sandbox.book_feeds import book_ticker_row
from include.sandbox.exchange import Exchange
from include.sandbox.rest import BinanceError, Endpoint, Query, fixed, klines
from include.sandbox.rest import _microseconds as microseconds_asked
from include.sandbox.rest import _store as store_asked
from include.sandbox.tickers import Window, average_price, window_minutes

_SYMBOLS_PARAM = re.compile(SYMBOLS_PARAM_RANGE)
# Binance's -1128 for symbol and symbols sent together (its documented message, with the recommendation).
SYMBOL_AND_SYMBOLS = (
    "Combination of optional parameters invalid. Recommendation: 'symbol' and 'symbols' cannot both be sent."
)


# Weights -------------------------------------------------------------------------------------


def _symbols_asked(query: Mapping[str, str]) -> int | None:
    """How many symbols a query names (None: all), read leniently: a weight is charged even for a bad query."""
    if query.get("symbol"):
        return 1
    symbols = query.get("symbols")
    return symbols.count(",") + 1 if symbols else None


def ticker_24hr_weight(query: Mapping[str, str]) -> int:
    count = _symbols_asked(query)
    for most, weight in TICKER_24HR_WEIGHTS:
        if count is not None and count <= most:
            return weight
    return TICKER_24HR_WEIGHT_ALL


def rolling_ticker_weight(query: Mapping[str, str]) -> int:
    count = _symbols_asked(query) or 1
    if count > ROLLING_TICKER_CAP_ABOVE_SYMBOLS:
        return ROLLING_TICKER_WEIGHT_CAP
    return ROLLING_TICKER_WEIGHT_PER_SYMBOL * count


def ticker_price_weight(query: Mapping[str, str]) -> int:
    return TICKER_PRICE_WEIGHT_ONE if query.get("symbol") else TICKER_PRICE_WEIGHT_MANY


# Parameters ----------------------------------------------------------------------------------


def _symbols(exchange: Exchange, query: Query, most: int | None = None) -> list[str] | None:
    """The symbols of ``symbols`` (a JSON list of at most ``most``), or None when it was not sent;
    Binance's errors otherwise."""
    text = query.text("symbols")
    if text is None:
        return None
    if query.text("symbol") is not None:
        raise BinanceError(ERROR_PARAM_COMBINATION, SYMBOL_AND_SYMBOLS)
    if not _SYMBOLS_PARAM.match(text):
        raise BinanceError(
            ERROR_ILLEGAL_CHARS,
            f"Illegal characters found in parameter 'symbols'; legal range is '{SYMBOLS_PARAM_RANGE}'.",
        )
    symbols = json.loads(text)
    if not symbols:
        raise BinanceError(
            ERROR_MANDATORY_PARAM, "Mandatory parameter 'symbols' was not sent, was empty/null, or malformed."
        )
    if most is not None and len(symbols) > most:
        raise BinanceError(
            ERROR_TOO_MANY_PARAMETERS, f"Too many values sent for parameter 'symbols', maximum allowed is {most}."
        )
    if len(set(symbols)) != len(symbols):
        raise BinanceError(ERROR_DUPLICATE_SYMBOLS, "Symbol is present multiple times in the list.")
    if any(symbol not in exchange.sources for symbol in symbols):
        raise BinanceError(ERROR_INVALID_SYMBOL, "Invalid symbol.")
    return symbols


def _ticker_type(query: Query) -> bool:
    """Whether the FULL ticker is asked for (the default) rather than the MINI."""
    kind = query.text("type") or TICKER_TYPES[0]
    if kind not in TICKER_TYPES:
        raise BinanceError(ERROR_INVALID_TICKER_TYPE, "Invalid ticker type.")
    return kind == TICKER_TYPES[0]


def _answer(
    exchange: Exchange, query: Query, build: Callable[[str], dict[str, object]], most: int | None = None
) -> object:
    """One object for ``symbol``, a list for ``symbols`` or (when allowed) every symbol."""
    symbols = _symbols(exchange, query, most)
    if query.text("symbol") is not None:
        return build(store_asked(exchange, query).symbol)
    return [build(symbol) for symbol in (symbols if symbols is not None else exchange.sources)]


# Payloads ------------------------------------------------------------------------------------


def _times(window: Window, microseconds: bool) -> dict[str, object]:
    scale = 1 if microseconds else 1000
    return {"openTime": window.open_us // scale, "closeTime": window.close_us // scale}


def _mini(window: Window, microseconds: bool) -> dict[str, object]:
    return {
        "symbol": window.symbol,
        "openPrice": format_units(window.open),
        "highPrice": format_units(window.high),
        "lowPrice": format_units(window.low),
        "lastPrice": format_units(window.last),
        "volume": format_units(window.volume),
        "quoteVolume": format_units(window.quote),
        **_times(window, microseconds),
        "firstId": window.first_id,
        "lastId": window.last_id,
        "count": window.count,
    }


def _change(window: Window) -> dict[str, object]:
    return {
        "priceChange": format_units(window.price_change),
        "priceChangePercent": window.price_change_percent(),
        "weightedAvgPrice": window.weighted_avg_price(),
    }


def ticker_24hr_payload(
    window: Window, top: tuple[int, int, int, int] | None, full: bool, microseconds: bool
) -> dict[str, object]:
    """``top`` is the book's best bid and ask (price, quantity each); None before the first trade."""
    mini = _mini(window, microseconds)
    if not full:
        return mini
    book = book_ticker_row(window.symbol, top)
    return {
        "symbol": window.symbol,
        **_change(window),
        "prevClosePrice": format_units(window.prev_close),
        "lastPrice": format_units(window.last),
        "lastQty": format_units(window.last_qty),
        **{name: value for name, value in book.items() if name != "symbol"},
        **{name: value for name, value in mini.items() if name not in ("symbol", "lastPrice")},
    }


def rolling_ticker_payload(window: Window, full: bool, microseconds: bool) -> dict[str, object]:
    """Binance's FULL rolling ticker has no prevClosePrice, lastQty, bid or ask."""
    mini = _mini(window, microseconds)
    return {"symbol": window.symbol, **_change(window), **mini} if full else mini


# Handlers ------------------------------------------------------------------------------------


def ticker_24hr(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "symbols", "type"}))
    full, microseconds, now = _ticker_type(query), microseconds_asked(request), exchange.now_us()

    def build(symbol: str) -> dict[str, object]:
        window = exchange.tickers.window(symbol, TICKER_24HR_MINUTES - 1, now)
        return ticker_24hr_payload(window, exchange.book(symbol).top() if full else None, full, microseconds)

    return _answer(exchange, query, build)


def rolling_ticker(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "symbols", "windowSize", "type"}))
    if query.text("symbol") is None and query.text("symbols") is None:
        query.required("symbol")
    _symbols(exchange, query, ROLLING_TICKER_MAX_SYMBOLS)  # the list's errors before windowSize's
    minutes = window_minutes(query.text("windowSize") or ROLLING_WINDOW_DEFAULT)
    if minutes is None:
        raise BinanceError(ERROR_INVALID_PARAM, "Data sent for parameter 'windowSize' is not valid.")
    full, microseconds, now = _ticker_type(query), microseconds_asked(request), exchange.now_us()

    def build(symbol: str) -> dict[str, object]:
        return rolling_ticker_payload(exchange.tickers.window(symbol, minutes, now), full, microseconds)

    return _answer(exchange, query, build, ROLLING_TICKER_MAX_SYMBOLS)


def ticker_price(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "symbols"}))

    def build(symbol: str) -> dict[str, object]:
        store = exchange.sources[symbol].store
        return {"symbol": symbol, "price": format_units(store.prices[-1] if len(store) else 0)}

    return _answer(exchange, query, build)


def avg_price(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol"}))
    price, last_trade_us = average_price(store_asked(exchange, query), exchange.now_us())
    scale = 1 if microseconds_asked(request) else 1000
    return {"mins": AVG_PRICE_MINUTES, "price": format_units(price), "closeTime": last_trade_us // scale}


def book_ticker_weight(query: Mapping[str, str]) -> int:
    return BOOK_TICKER_WEIGHT_ONE if query.get("symbol") else BOOK_TICKER_WEIGHT_MANY


def book_ticker(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "symbols"}))
    return _answer(exchange, query, lambda symbol: book_ticker_row(symbol, exchange.book(symbol).top()))


# uiKlines: the same parameters and payload as klines (Binance's chart tweaks are not reproduced).
TICKER_ENDPOINTS: dict[str, Endpoint] = {
    "ticker/24hr": Endpoint(ticker_24hr_weight, ticker_24hr),
    "ticker": Endpoint(rolling_ticker_weight, rolling_ticker),
    "ticker/price": Endpoint(ticker_price_weight, ticker_price),
    "ticker/bookTicker": Endpoint(book_ticker_weight, book_ticker),
    "avgPrice": Endpoint(fixed(WEIGHTS["avgPrice"]), avg_price),
    "uiKlines": Endpoint(fixed(WEIGHTS["uiKlines"]), klines),
}
