"""Binance's market stream payloads other than ``@trade``: aggregate trades, klines and tickers.

Times are in milliseconds, or microseconds on a ``timeUnit=MICROSECOND`` connection, as for trades.
The ``@ticker`` event's best bid and ask (b, B, a, A) are the order book's top, passed in.
"""

from __future__ import annotations

import json
from typing import cast

from include.decimals import format_units
from include.sandbox.store import AggTrade
from include.sandbox.tickers import Window


def _json(event: dict[str, object]) -> str:
    return json.dumps(event, separators=(",", ":"))


def agg_trade_event(agg: AggTrade, symbol: str, event_time: int, microseconds: bool) -> str:
    trade_time = agg.time_us if microseconds else agg.time_us // 1000
    maker = "true" if agg.is_buyer_maker else "false"
    return (
        f'{{"e":"aggTrade","E":{event_time},"s":"{symbol}","a":{agg.agg_id},'
        f'"p":"{format_units(agg.price)}","q":"{format_units(agg.qty)}","f":{agg.first_id},"l":{agg.last_id},'
        f'"T":{trade_time},"m":{maker},"M":true}}'
    )


def kline_event(
    symbol: str,
    row: list[object],
    ids: tuple[int, int],
    interval: str,
    closed: bool,
    event_us: int,
    microseconds: bool,
) -> str:
    """A kline event from REST's 12-column row in milliseconds (``include.sandbox.klines``), with the
    ids of its first and last trades (-1 when it has none)."""
    open_ms, close_ms = cast(int, row[0]), cast(int, row[6])
    first_id, last_id = ids
    scale, tail = (1000, 999) if microseconds else (1, 0)
    kline = {
        "t": open_ms * scale,
        "T": close_ms * scale + tail,
        "s": symbol,
        "i": interval,
        "f": first_id,
        "L": last_id,
        "o": row[1],
        "c": row[4],
        "h": row[2],
        "l": row[3],
        "v": row[5],
        "n": row[8],
        "x": closed,
        "q": row[7],
        "V": row[9],
        "Q": row[10],
        "B": "0",
    }
    return _json({"e": "kline", "E": event_us if microseconds else event_us // 1000, "s": symbol, "k": kline})


def mini_ticker_event(window: Window, event_us: int, microseconds: bool) -> str:
    return _json(_mini(window, event_us, microseconds))


def _mini(window: Window, event_us: int, microseconds: bool) -> dict[str, object]:
    return {
        "e": "24hrMiniTicker",
        "E": event_us if microseconds else event_us // 1000,
        "s": window.symbol,
        "c": format_units(window.last),
        "o": format_units(window.open),
        "h": format_units(window.high),
        "l": format_units(window.low),
        "v": format_units(window.volume),
        "q": format_units(window.quote),
    }


def ticker_event(window: Window, top: tuple[int, int, int, int] | None, event_us: int, microseconds: bool) -> str:
    """``top``: the book's best bid and ask, price and quantity each (zeros before the first trade)."""
    scale = 1 if microseconds else 1000
    bid, bid_qty, ask, ask_qty = top or (0, 0, 0, 0)
    return _json(
        {
            "e": "24hrTicker",
            "E": event_us // scale,
            "s": window.symbol,
            "p": format_units(window.price_change),
            "P": window.price_change_percent(),
            "w": window.weighted_avg_price(),
            "x": format_units(window.prev_close),
            "c": format_units(window.last),
            "Q": format_units(window.last_qty),
            "b": format_units(bid),
            "B": format_units(bid_qty),
            "a": format_units(ask),
            "A": format_units(ask_qty),
            "o": format_units(window.open),
            "h": format_units(window.high),
            "l": format_units(window.low),
            "v": format_units(window.volume),
            "q": format_units(window.quote),
            "O": window.open_us // scale,
            "C": window.close_us // scale,
            "F": window.first_id,
            "L": window.last_id,
            "n": window.count,
        }
    )


def array_event(events: list[str]) -> str:
    """``!miniTicker@arr`` and ``!ticker@arr``: the changed symbols' events in one array."""
    return "[" + ",".join(events) + "]"
