"""Market stream names, parsed in one place: ``btcusdt@trade``, ``btcusdt@kline_1m``, ``!ticker@arr``..."""

from __future__ import annotations

import re
from dataclasses import dataclass

from include.binance.protocol import (
    ALL_MARKET_STREAMS,
    DEPTH_UPDATE_SPEEDS_MS,
    PARTIAL_DEPTH_LEVELS,
    STREAM_NAME_PATTERN,
)
from include.sandbox.klines import INTERVALS

TRADE = "trade"
AGG_TRADE = "aggTrade"
KLINE = "kline"
MINI_TICKER = "miniTicker"
TICKER = "ticker"
BOOK_TICKER = "bookTicker"
PARTIAL_DEPTH = "depthPartial"  # <symbol>@depth<levels>[@100ms]: the top of the book
DIFF_DEPTH = "depth"  # <symbol>@depth[@100ms]: the diff stream
ALL_MINI_TICKERS, ALL_TICKERS = ALL_MARKET_STREAMS
_SYMBOL_KINDS = (TRADE, AGG_TRADE, MINI_TICKER, TICKER, BOOK_TICKER)
_KLINE_PREFIX = "kline_"
_DEPTH_STREAM = re.compile(
    "^depth("
    + "|".join(map(str, PARTIAL_DEPTH_LEVELS))
    + ")?(?:@("
    + "|".join(map(str, DEPTH_UPDATE_SPEEDS_MS))
    + ")ms)?$"
)


@dataclass(frozen=True, slots=True)
class Stream:
    """What a stream name asks for: its kind, the symbol (upper case) and a kline's interval."""

    kind: str
    symbol: str | None = None
    interval: str | None = None
    levels: int = 0  # a partial depth's levels
    period_ms: int = 0  # a depth stream's period (the others have Binance's fixed one)


def stream_name(symbol: str, kind: str) -> str:
    """The name of a symbol's stream of one kind, as clients ask for it: ``btcusdt@trade``."""
    return f"{symbol.lower()}@{kind}"


def valid_stream_name(name: str) -> bool:
    """Whether a name is well formed (a connection may subscribe to one the sandbox does not serve)."""
    return name in ALL_MARKET_STREAMS or STREAM_NAME_PATTERN.match(name) is not None


def parse_stream(name: str) -> Stream | None:
    """The stream a name asks for, or None for one the sandbox does not serve."""
    if name in ALL_MARKET_STREAMS:
        return Stream(name)
    symbol, _, kind = name.partition("@")
    if kind in _SYMBOL_KINDS:
        return Stream(kind, symbol.upper())
    interval = kind.removeprefix(_KLINE_PREFIX)
    if kind.startswith(_KLINE_PREFIX) and interval in INTERVALS:
        return Stream(KLINE, symbol.upper(), interval)
    depth = _DEPTH_STREAM.match(kind)
    if depth is None:
        return None
    period = int(depth.group(2) or DEPTH_UPDATE_SPEEDS_MS[0])
    if depth.group(1):
        return Stream(PARTIAL_DEPTH, symbol.upper(), levels=int(depth.group(1)), period_ms=period)
    return Stream(DIFF_DEPTH, symbol.upper(), period_ms=period)
