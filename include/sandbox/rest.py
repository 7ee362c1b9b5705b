"""Binance spot REST endpoints of the sandbox: same paths, parameters, payloads, weights and errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from include.binance.protocol import (
    DEPTH_DEFAULT_LIMIT,
    DEPTH_MAX_LIMIT,
    DEPTH_WEIGHTS,
    ERROR_ILLEGAL_CHARS,
    ERROR_INVALID_INTERVAL,
    ERROR_INVALID_PARAM,
    ERROR_INVALID_SYMBOL,
    ERROR_MANDATORY_PARAM,
    ERROR_PARAM_COMBINATION,
    ERROR_START_AFTER_END,
    ERROR_TOO_MANY_REQUESTS,
    ERROR_UNKNOWN,
    ERROR_UNREAD_PARAMS,
    INTEGER_PARAM_PATTERN,
    MAX_LIMIT,
    ORDER_LIMITS,
    RAW_REQUESTS_LIMIT,
    SYMBOL_PARAM_PATTERN,
    TIME_UNIT_HEADER,
    TIME_UNITS,
    WEIGHT_HEADER,
    WEIGHT_HEADER_LEGACY,
    WEIGHTS,
)
from include.decimals import format_plain, format_units
from include.sandbox import klines as kline_math
from include.sandbox.book_feeds import depth_body
from include.sandbox.exchange import Exchange
from include.sandbox.store import TradeStore


class BinanceError(Exception):
    """An error answered with Binance's body: ``{"code": -1121, "msg": "Invalid symbol."}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


# An endpoint's request weight, from its query: some of Binance's depend on the parameters (a
# ticker's on how many symbols it asks for, the order book's on its limit).
Weigh = Callable[[Mapping[str, str]], int]


def fixed(weight: int) -> Weigh:
    """The weight of an endpoint whose weight does not depend on its parameters."""
    return lambda query: weight


@dataclass(frozen=True)
class Endpoint:
    weigh: Weigh
    handler: Callable[[Exchange, web.Request], object]


class Query:
    """Typed access to query parameters, failing the way Binance fails."""

    def __init__(self, request: web.Request, allowed: frozenset[str]) -> None:
        self._params = request.query
        unread = [name for name in self._params if name not in allowed]
        if unread:
            raise BinanceError(
                ERROR_UNREAD_PARAMS,
                f"Not all sent parameters were read; read '{len(self._params) - len(unread)}' "
                f"parameter(s) but was sent '{len(self._params)}'.",
            )

    def text(self, name: str) -> str | None:
        value = self._params.get(name)
        return value if value else None

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise BinanceError(
                ERROR_MANDATORY_PARAM, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )
        return value

    def integer(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not INTEGER_PARAM_PATTERN.match(value):
            raise BinanceError(
                ERROR_ILLEGAL_CHARS,
                f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
            )
        return int(value)

    def limit(self, default: int, maximum: int = MAX_LIMIT) -> int:
        limit = self.integer("limit")
        if limit is None:
            return default
        if limit < 1:
            raise BinanceError(ERROR_INVALID_PARAM, "Data sent for parameter 'limit' is not valid.")
        return min(limit, maximum)


def _store(exchange: Exchange, query: Query) -> TradeStore:
    symbol = query.required("symbol")
    if not SYMBOL_PARAM_PATTERN.match(symbol):
        raise BinanceError(
            ERROR_ILLEGAL_CHARS, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
        )
    source = exchange.sources.get(symbol)
    if source is None:
        raise BinanceError(ERROR_INVALID_SYMBOL, "Invalid symbol.")
    return source.store


def _microseconds(request: web.Request) -> bool:
    unit = request.headers.get(TIME_UNIT_HEADER, TIME_UNITS[0]).upper()
    if unit not in TIME_UNITS:
        raise BinanceError(ERROR_ILLEGAL_CHARS, "Invalid time unit.")
    return unit == "MICROSECOND"


def _time(time_us: int, microseconds: bool) -> int:
    return time_us if microseconds else time_us // 1000


def _trade_rows(store: TradeStore, start: int, stop: int, microseconds: bool) -> list[dict[str, object]]:
    return [
        {
            "id": trade.trade_id,
            "price": format_units(trade.price),
            "qty": format_units(trade.qty),
            "quoteQty": format_units(trade.quote_qty),
            "time": _time(trade.time_us, microseconds),
            "isBuyerMaker": trade.is_buyer_maker,
            "isBestMatch": True,
        }
        for trade in store.trades(start, stop)
    ]


def _time_range(query: Query, microseconds: bool) -> tuple[int | None, int | None]:
    """startTime/endTime as microseconds; the parameters are in the request's time unit.

    Both ends are inclusive: an endTime in milliseconds covers every microsecond of that millisecond.
    """
    start, end = query.integer("startTime"), query.integer("endTime")
    if start is not None and end is not None and start > end:
        raise BinanceError(ERROR_START_AFTER_END, "Start time is greater than end time.")
    scale = 1 if microseconds else 1000
    return (
        None if start is None else start * scale,
        None if end is None else end * scale + scale - 1,
    )


def ping(exchange: Exchange, request: web.Request) -> object:
    Query(request, frozenset())
    return {}


def server_time(exchange: Exchange, request: web.Request) -> object:
    Query(request, frozenset())
    return {"serverTime": _time(exchange.now_us(), _microseconds(request))}


def exchange_info(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "symbols", "permissions", "showPermissionSets"}))
    wanted = list(exchange.specs)
    if query.text("symbol"):
        wanted = [query.required("symbol")]
    elif query.text("symbols"):
        try:
            wanted = json.loads(query.required("symbols"))
        except json.JSONDecodeError as error:
            raise BinanceError(ERROR_ILLEGAL_CHARS, "Illegal characters found in parameter 'symbols'.") from error
    unknown = [symbol for symbol in wanted if symbol not in exchange.specs]
    if unknown:
        raise BinanceError(ERROR_INVALID_SYMBOL, "Invalid symbol.")
    limit = exchange.limiter.limit
    return {
        "timezone": "UTC",
        "serverTime": exchange.now_us() // 1000,
        "rateLimits": [
            _rate_limit("REQUEST_WEIGHT", "MINUTE", 1, limit),
            *(_rate_limit("ORDERS", *limit) for limit in ORDER_LIMITS),
            _rate_limit("RAW_REQUESTS", *RAW_REQUESTS_LIMIT),
        ],
        "exchangeFilters": [],
        "symbols": [_symbol_info(exchange, symbol) for symbol in wanted],
    }


def _rate_limit(kind: str, interval: str, interval_num: int, limit: int) -> dict[str, object]:
    return {"rateLimitType": kind, "interval": interval, "intervalNum": interval_num, "limit": limit}


def _symbol_info(exchange: Exchange, symbol: str) -> dict[str, object]:
    spec = exchange.specs[symbol]
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": spec.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": format_units(spec.tick_units),
                "maxPrice": "1000000.00000000",
                "tickSize": format_units(spec.tick_units),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": format_units(spec.step_units),
                "maxQty": "9000.00000000",
                "stepSize": format_units(spec.step_units),
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        "tickSize": format_plain(spec.tick_units),
    }


def recent_trades(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "limit"}))
    store = _store(exchange, query)
    limit = query.limit(500)
    return _trade_rows(store, len(store) - limit, len(store), _microseconds(request))


def historical_trades(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "limit", "fromId"}))
    store = _store(exchange, query)
    limit = query.limit(500)
    from_id = query.integer("fromId")
    start = len(store) - limit if from_id is None else store.index_of_id(from_id)
    return _trade_rows(store, start, start + limit, _microseconds(request))


def agg_trades(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "fromId", "startTime", "endTime", "limit"}))
    store = _store(exchange, query)
    limit = query.limit(500)
    microseconds = _microseconds(request)
    from_id = query.integer("fromId")
    start_us, end_us = _time_range(query, microseconds)
    if from_id is not None and (start_us is not None or end_us is not None):
        raise BinanceError(ERROR_PARAM_COMBINATION, "Combination of optional parameters invalid.")
    count = store.agg_count()
    if from_id is not None:
        first = store.agg_index_of_id(from_id)
        stop = min(first + limit, count)
    elif start_us is not None:
        first = store.agg_index_of_time(start_us)
        stop = count if end_us is None else store.agg_index_after_time(end_us)
        stop = min(stop, first + limit)
    elif end_us is not None:
        stop = store.agg_index_after_time(end_us)
        first = max(stop - limit, 0)
    else:
        first, stop = max(count - limit, 0), count
    rows = []
    for index in range(first, stop):
        agg = store.agg(index)
        rows.append(
            {
                "a": agg.agg_id,
                "p": format_units(agg.price),
                "q": format_units(agg.qty),
                "f": agg.first_id,
                "l": agg.last_id,
                "T": _time(agg.time_us, microseconds),
                "m": agg.is_buyer_maker,
                "M": True,
            }
        )
    return rows


def klines(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "interval", "startTime", "endTime", "limit", "timeZone"}))
    store = _store(exchange, query)
    interval = query.required("interval")
    if interval not in kline_math.INTERVALS:
        raise BinanceError(ERROR_INVALID_INTERVAL, "Invalid interval.")
    if query.text("timeZone") not in (None, "0", "+0", "0:00", "+00:00"):
        raise BinanceError(ERROR_INVALID_PARAM, "Data sent for parameter 'timeZone' is not valid.")
    limit = query.limit(500)
    microseconds = _microseconds(request)
    start_us, end_us = _time_range(query, microseconds)
    return kline_math.klines(
        store,
        interval,
        now_ms=exchange.now_us() // 1000,
        start_ms=None if start_us is None else -(-start_us // 1000),
        end_ms=None if end_us is None else end_us // 1000,
        limit=limit,
        time_unit_us=microseconds,
    )


def _depth_weight(query: Mapping[str, str]) -> int:
    """Binance's weight for the limit asked (a malformed one is refused, at the default's weight)."""
    text = query.get("limit", "")
    limit = int(text) if INTEGER_PARAM_PATTERN.match(text) else DEPTH_DEFAULT_LIMIT
    return next((weight for most, weight in DEPTH_WEIGHTS if limit <= most), DEPTH_WEIGHTS[-1][1])


def depth(exchange: Exchange, request: web.Request) -> object:
    query = Query(request, frozenset({"symbol", "limit"}))
    symbol = _store(exchange, query).symbol
    limit = query.limit(DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT)
    return depth_body(*exchange.book(symbol).snapshot(limit))


_HANDLERS: dict[str, Callable[[Exchange, web.Request], object]] = {
    "ping": ping,
    "time": server_time,
    "exchangeInfo": exchange_info,
    "trades": recent_trades,
    "historicalTrades": historical_trades,
    "aggTrades": agg_trades,
    "klines": klines,
}
# Weights are Binance's, from the one place the product keeps Binance's REST facts.
ENDPOINTS: dict[str, Endpoint] = {name: Endpoint(fixed(WEIGHTS[name]), handler) for name, handler in _HANDLERS.items()}
ENDPOINTS["depth"] = Endpoint(_depth_weight, depth)


def _json(status: int, body: object, headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body, separators=(",", ":")), content_type="application/json", headers=headers
    )


def make_handler(
    exchange: Exchange, endpoints: Mapping[str, Endpoint] = ENDPOINTS
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        endpoint = endpoints.get(request.match_info["endpoint"])
        if endpoint is None:
            raise web.HTTPNotFound()  # answered with Binance's JSON error body (include.sandbox.http_errors)
        exchange.tick()
        client = request.remote or "unknown"
        verdict = exchange.limiter.charge(client, endpoint.weigh(request.query), exchange.now_us() / 1e6)
        used = str(verdict.used)
        headers = {WEIGHT_HEADER_LEGACY: used, WEIGHT_HEADER: used}
        if verdict.status == 429:
            headers["Retry-After"] = str(verdict.retry_after)
            limit = exchange.limiter.limit
            return _json(
                429,
                {
                    "code": ERROR_TOO_MANY_REQUESTS,
                    "msg": f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
                    "Please use WebSocket Streams for live updates to avoid polling the API.",
                },
                headers,
            )
        if verdict.status == 418:
            headers["Retry-After"] = str(verdict.retry_after)
            return _json(
                418,
                {
                    "code": ERROR_TOO_MANY_REQUESTS,
                    "msg": f"Way too much request weight used; IP banned until {verdict.banned_until_ms}. "
                    "Please use WebSocket Streams for live updates to avoid bans.",
                },
                headers,
            )
        if exchange.faults.rest_error_rate and exchange.rng.random() < exchange.faults.rest_error_rate:
            exchange.record.rest_errors += 1
            status = exchange.rng.choice((500, 502, 503))
            return _json(
                status,
                {"code": ERROR_UNKNOWN, "msg": "Internal error; unable to process your request. Please try again."},
                headers,
            )
        try:
            return _json(200, endpoint.handler(exchange, request), headers)
        except BinanceError as error:
            return _json(error.status, {"code": error.code, "msg": error.msg}, headers)

    return handle
