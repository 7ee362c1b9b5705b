"""Binance's tickers recomputed in tests from trades read over the wire, with exact decimals.

Nothing here reuses the sandbox's ticker code: statistics are plain Decimal sums, maxima and minima of
the trades in a window, and the two divisions are rounded half away from zero, as the sandbox says it does.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, localcontext
from typing import Any

EXACT = Context(prec=80, traps=[Inexact])
ZERO8 = "0.00000000"
# Binance's payloads, field by field in its order (spot API documentation).
FULL_24HR_FIELDS = [
    "symbol",
    "priceChange",
    "priceChangePercent",
    "weightedAvgPrice",
    "prevClosePrice",
    "lastPrice",
    "lastQty",
    "bidPrice",
    "bidQty",
    "askPrice",
    "askQty",
    "openPrice",
    "highPrice",
    "lowPrice",
    "volume",
    "quoteVolume",
    "openTime",
    "closeTime",
    "firstId",
    "lastId",
    "count",
]
BOOK_FIELDS = ("bidPrice", "bidQty", "askPrice", "askQty")  # from the synthetic book: ticker/bookTicker's
FULL_ROLLING_FIELDS = [
    "symbol",
    "priceChange",
    "priceChangePercent",
    "weightedAvgPrice",
    "openPrice",
    "highPrice",
    "lowPrice",
    "lastPrice",
    "volume",
    "quoteVolume",
    "openTime",
    "closeTime",
    "firstId",
    "lastId",
    "count",
]
MINI_FIELDS = [
    "symbol",
    "openPrice",
    "highPrice",
    "lowPrice",
    "lastPrice",
    "volume",
    "quoteVolume",
    "openTime",
    "closeTime",
    "firstId",
    "lastId",
    "count",
]


def d8(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.00000001'), rounding=ROUND_HALF_UP):f}"


def expected_window(
    symbol: str, trades: list[dict[str, Any]], open_ms: int, close_ms: int, book: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every figure of a FULL ticker (24hr's and rolling's) over the trades with time in [open_ms, close_ms];
    with ``book`` (the sandbox's ``ticker/bookTicker`` row of the same moment), 24hr's best bid and ask too,
    in Binance's order."""
    figures = _window_figures(symbol, trades, open_ms, close_ms)
    if book is None:
        return figures
    return {name: book[name] if name in BOOK_FIELDS else figures[name] for name in FULL_24HR_FIELDS}


def _window_figures(symbol: str, trades: list[dict[str, Any]], open_ms: int, close_ms: int) -> dict[str, Any]:
    inside = [t for t in trades if open_ms <= t["time"] <= close_ms]
    before = [t for t in trades if t["time"] < open_ms]
    prev_close = before[-1]["price"] if before else ZERO8
    if not inside:
        return {
            "symbol": symbol,
            "priceChange": ZERO8,
            "priceChangePercent": "0.000",
            "weightedAvgPrice": ZERO8,
            "prevClosePrice": prev_close,
            "lastPrice": ZERO8,
            "lastQty": ZERO8,
            "openPrice": ZERO8,
            "highPrice": ZERO8,
            "lowPrice": ZERO8,
            "volume": ZERO8,
            "quoteVolume": ZERO8,
            "openTime": open_ms,
            "closeTime": close_ms,
            "firstId": -1,
            "lastId": -1,
            "count": 0,
        }
    with localcontext(EXACT):
        prices = [Decimal(t["price"]) for t in inside]
        volume = sum((Decimal(t["qty"]) for t in inside), Decimal(0))
        quote = sum((Decimal(t["price"]) * Decimal(t["qty"]) for t in inside), Decimal(0))
        change = prices[-1] - prices[0]
    with localcontext(Context(prec=80)):
        percent = (change * 100 / prices[0]).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
        average = d8(quote / volume)
    return {
        "symbol": symbol,
        "priceChange": d8(change),
        "priceChangePercent": f"{percent:f}",
        "weightedAvgPrice": average,
        "prevClosePrice": prev_close,
        "lastPrice": inside[-1]["price"],
        "lastQty": inside[-1]["qty"],
        "openPrice": inside[0]["price"],
        "highPrice": d8(max(prices)),
        "lowPrice": d8(min(prices)),
        "volume": d8(volume),
        "quoteVolume": d8(quote),
        "openTime": open_ms,
        "closeTime": close_ms,
        "firstId": inside[0]["id"],
        "lastId": inside[-1]["id"],
        "count": len(inside),
    }


def shaped(full: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The ticker of ``fields`` (in that order) out of a FULL ticker."""
    return {name: full[name] for name in fields}
