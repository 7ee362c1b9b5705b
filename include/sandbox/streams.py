"""Market stream names, parsed in one place: ``btcusdt@trade``, ``btcusdt@kline_1m``, ``!ticker@arr``..."""

from __future__ import annotations

from dataclasses import dataclass

from include.binance.protocol import ALL_MARKET_STREAMS, STREAM_NAME_PATTERN
from include.sandbox.klines import INTERVALS

TRADE = "trade"
AGG_TRADE = "aggTrade"
KLINE = "kline"
MINI_TICKER = "miniTicker"
TICKER = "ticker"
ALL_MINI_TICKERS, ALL_TICKERS = ALL_MARKET_STREAMS
_SYMBOL_KINDS = (TRADE, AGG_TRADE, MINI_TICKER, TICKER)
_KLINE_PREFIX = "kline_"


@dataclass(frozen=True, slots=True)
class Stream:
    """What a stream name asks for: its kind, the symbol (upper case) and a kline's interval."""

    kind: str
    symbol: str | None = None
    interval: str | None = None


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
    return None
