"""The order book's payloads and streams, as Binance sends them.

REST ``depth`` and ``ticker/bookTicker`` format their rows here. The streams:

- ``<symbol>@bookTicker``: ``{"u","s","b","B","a","A"}`` whenever the best bid or ask (price or
  quantity) changed, checked after every tick that made trades for the symbol.
- ``<symbol>@depth<5|10|20>[@100ms]``: the top of the book ``{"lastUpdateId","bids","asks"}`` every
  1000 ms (or 100 ms).
- ``<symbol>@depth[@100ms]``: ``depthUpdate`` events with the updates since the previous event,
  ``U`` the first update id and ``u`` the last, every 1000 ms (or 100 ms) that has any.

Each periodic payload is made once per symbol and period, by one loop per server, and queued to
every connection that subscribed (``StreamHub.queue_event``): the cost grows with symbols
subscribed, not with connections. Stream names are parsed in ``include.sandbox.streams``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from include.binance.protocol import DEPTH_UPDATE_SPEEDS_MS
from include.decimals import format_units
from include.sandbox.book import BookChanges, Level, OrderBook
from include.sandbox.exchange import Exchange
from include.sandbox.store import Trade
from include.sandbox.streams import BOOK_TICKER, DIFF_DEPTH, PARTIAL_DEPTH, Stream

_BASE_PERIOD_MS = min(DEPTH_UPDATE_SPEEDS_MS)
BOOK_KINDS = (BOOK_TICKER, PARTIAL_DEPTH, DIFF_DEPTH)


# Payloads ----------------------------------------------------------------------------------------


def levels_json(levels: Iterable[Level]) -> list[list[str]]:
    return [[format_units(price), format_units(qty)] for price, qty in levels]


def depth_body(update_id: int, bids: list[Level], asks: list[Level]) -> dict[str, object]:
    """REST ``depth`` and the partial depth streams: the same object."""
    return {"lastUpdateId": update_id, "bids": levels_json(bids), "asks": levels_json(asks)}


def book_ticker_row(symbol: str, top: tuple[int, int, int, int] | None) -> dict[str, object]:
    """REST ``ticker/bookTicker``; a symbol with no trade yet has an empty book: zeros."""
    bid, bid_qty, ask, ask_qty = top or (0, 0, 0, 0)
    return {
        "symbol": symbol,
        "bidPrice": format_units(bid),
        "bidQty": format_units(bid_qty),
        "askPrice": format_units(ask),
        "askQty": format_units(ask_qty),
    }


def book_ticker_event(symbol: str, update_id: int, top: tuple[int, int, int, int]) -> str:
    bid, bid_qty, ask, ask_qty = (format_units(value) for value in top)
    return f'{{"u":{update_id},"s":"{symbol}","b":"{bid}","B":"{bid_qty}","a":"{ask}","A":"{ask_qty}"}}'


def depth_update_event(symbol: str, event_time: int, changes: BookChanges) -> str:
    """A ``depthUpdate``: bids best first, asks best first (Binance's order)."""
    event = {
        "e": "depthUpdate",
        "E": event_time,
        "s": symbol,
        "U": changes.first_id,
        "u": changes.last_id,
        "b": levels_json(sorted(changes.bids.items(), reverse=True)),
        "a": levels_json(sorted(changes.asks.items())),
    }
    return json.dumps(event, separators=(",", ":"))


def _diff_event(symbol: str, now_us: int, changes: BookChanges) -> Callable[[bool], str]:
    return lambda micro: depth_update_event(symbol, now_us if micro else now_us // 1000, changes)


# Streams -----------------------------------------------------------------------------------------


class Publisher(Protocol):
    """What the feeds need of the hub: the streams subscribed, and a way to queue to them."""

    def subscribed(self) -> Mapping[str, Stream]: ...

    def queue_event(self, stream: str, encode: Callable[[bool], str]) -> None: ...


class BookFeeds:
    """The book streams of one server: the book ticker after each tick, the depth streams by period."""

    def __init__(self, exchange: Exchange, hub: Publisher) -> None:
        self.exchange = exchange
        self.hub = hub
        self._tops_sent: dict[str, tuple[int, int, int, int]] = {}
        self._cursors: dict[tuple[str, int], int] = {}  # (symbol, period): last update id sent
        self._derived_from: Mapping[str, Stream] | None = None  # the hub's subscriptions last read
        self._book: dict[str, Stream] = {}  # of those, the book streams of symbols the exchange trades
        self._tickers: list[tuple[str, str]] = []  # (name, symbol) of the @bookTicker streams among them

    def _book_streams(self) -> dict[str, Stream]:
        """The book streams some connection subscribes to, by name: derived again only when the
        hub's subscriptions changed (it hands out a new object then), not at every tick."""
        subscribed = self.hub.subscribed()
        if subscribed is not self._derived_from:
            self._derived_from = subscribed
            self._book = {
                name: stream
                for name, stream in subscribed.items()
                if stream.kind in BOOK_KINDS and stream.symbol in self.exchange.sources
            }
            self._tickers = [(name, str(s.symbol)) for name, s in self._book.items() if s.kind == BOOK_TICKER]
        return self._book

    # The book ticker: after every tick --------------------------------------------------------

    def on_trades(self, new: dict[str, list[Trade]]) -> None:
        """An exchange listener: the book tickers of the symbols that traded, where the top moved."""
        if not self._book_streams():
            return  # no book stream subscribed: a tick costs the book streams nothing
        for name, symbol in self._tickers:
            if symbol not in new:
                continue
            book = self.exchange.book(symbol)
            top = book.top()
            if top is None or self._tops_sent.get(symbol) == top:
                continue
            self._tops_sent[symbol] = top
            event = book_ticker_event(symbol, book.update_id, top)
            self.hub.queue_event(name, lambda micro, event=event: event)

    # The depth streams: every period ----------------------------------------------------------

    async def run(self) -> None:
        """Every 100 ms the @100ms depth streams, every 1000 ms the others; on a schedule, no drift."""
        started = time.monotonic()
        rounds = 0
        while True:
            # The next round on the schedule; one that fell behind (a stall, a slow request) skips the
            # rounds it missed rather than sending their identical snapshots back to back.
            rounds = max(rounds + 1, int((time.monotonic() - started) * 1000 // _BASE_PERIOD_MS))
            await asyncio.sleep(max(started + rounds * _BASE_PERIOD_MS / 1000 - time.monotonic(), 0))
            elapsed_ms = rounds * _BASE_PERIOD_MS
            self.publish_depth({period for period in DEPTH_UPDATE_SPEEDS_MS if elapsed_ms % period == 0})

    def publish_depth(self, periods: set[int]) -> None:
        index = {
            name: stream
            for name, stream in self._book_streams().items()
            if stream.kind != BOOK_TICKER and stream.period_ms in periods
        }
        live = {(str(stream.symbol), stream.period_ms) for stream in index.values() if stream.kind == DIFF_DEPTH}
        for key in [key for key in self._cursors if key[1] in periods and key not in live]:
            del self._cursors[key]  # no subscriber: a later one starts from the book as it is then
        now_us = self.exchange.now_us()
        diffs: dict[tuple[str, int], BookChanges | None] = {}  # once per symbol and period, whatever its names
        for name, stream in index.items():
            symbol = str(stream.symbol)
            book = self.exchange.book(symbol)
            if stream.kind == PARTIAL_DEPTH:
                text = json.dumps(depth_body(*book.snapshot(stream.levels)), separators=(",", ":"))
                self.hub.queue_event(name, lambda micro, text=text: text)
                continue
            key = (symbol, stream.period_ms)
            if key not in diffs:
                diffs[key] = self._next_changes(key, book)
            changes = diffs[key]
            if changes is not None:
                self.hub.queue_event(name, _diff_event(symbol, now_us, changes))

    def _next_changes(self, key: tuple[str, int], book: OrderBook) -> BookChanges | None:
        """The updates since this stream's last event; a new stream starts from the book as it is."""
        if key not in self._cursors:
            self._cursors[key] = book.update_id
            return None
        changes = book.changes(self._cursors[key])
        if changes is not None:
            self._cursors[key] = changes.last_id
        return changes
