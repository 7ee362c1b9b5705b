"""The order book's payloads and streams, as Binance sends them.

REST ``depth`` and ``ticker/bookTicker`` format their rows here. The streams:

- ``<symbol>@bookTicker``: ``{"u","s","b","B","a","A"}`` whenever the best bid or ask (price or
  quantity) changed, checked after every tick that made trades for the symbol.
- ``<symbol>@depth<5|10|20>[@100ms]``: the top of the book ``{"lastUpdateId","bids","asks"}`` every
  1000 ms (or 100 ms).
- ``<symbol>@depth[@100ms]``: ``depthUpdate`` events with the updates since the previous event,
  ``U`` the first update id and ``u`` the last, every 1000 ms (or 100 ms) that has any.

Each periodic payload is made once per symbol and period, by one loop per server, and queued to
every connection that subscribed: the cost grows with symbols subscribed, not with connections.
Stream names are parsed here only, once per subscription list.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from include.binance.protocol import DEPTH_UPDATE_SPEEDS_MS, PARTIAL_DEPTH_LEVELS
from include.decimals import format_units
from include.sandbox.book import BookChanges, Level, OrderBook
from include.sandbox.exchange import Exchange
from include.sandbox.store import Trade

BOOK_TICKER, PARTIAL_DEPTH, DIFF_DEPTH = "bookTicker", "partial", "diff"
_BASE_PERIOD_MS = min(DEPTH_UPDATE_SPEEDS_MS)
_DEPTH_STREAM = re.compile(
    "^depth("
    + "|".join(map(str, PARTIAL_DEPTH_LEVELS))
    + ")?(?:@("
    + "|".join(map(str, DEPTH_UPDATE_SPEEDS_MS))
    + ")ms)?$"
)


@dataclass(frozen=True, slots=True)
class BookStream:
    symbol: str  # upper case, as the exchange names it
    kind: str  # BOOK_TICKER, PARTIAL_DEPTH or DIFF_DEPTH
    levels: int = 0  # a partial depth's levels
    period_ms: int = 0  # a depth stream's period; the book ticker is real-time


def parse_book_stream(name: str) -> BookStream | None:
    """The book stream a stream name asks for, or None if it names another stream."""
    symbol, _, stream = name.partition("@")
    if stream == "bookTicker":
        return BookStream(symbol.upper(), BOOK_TICKER)
    match = _DEPTH_STREAM.match(stream)
    if match is None:
        return None
    period = int(match.group(2) or DEPTH_UPDATE_SPEEDS_MS[0])
    if match.group(1):
        return BookStream(symbol.upper(), PARTIAL_DEPTH, int(match.group(1)), period)
    return BookStream(symbol.upper(), DIFF_DEPTH, 0, period)


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


class Subscriber(Protocol):
    streams: list[str]
    combined: bool
    microseconds: bool
    closing: bool


Deliver = Callable[[Any, list[str]], None]


class BookFeeds:
    """The book streams of one server: the book ticker after each tick, the depth streams by period."""

    def __init__(self, exchange: Exchange, connections: set[Any], deliver: Deliver) -> None:
        self.exchange = exchange
        self.connections = connections  # the hub's own set: connections come and go there
        self.deliver = deliver
        # Per connection: its subscription list (by identity: control messages replace the list)
        # and the book streams in it, so that names are parsed once per change of subscriptions.
        self._parsed: dict[Any, tuple[list[str], tuple[tuple[str, BookStream], ...]]] = {}
        self._tops_sent: dict[str, tuple[int, int, int, int]] = {}
        self._cursors: dict[tuple[str, int], int] = {}  # (symbol, period): last update id sent

    def _book_streams(self, conn: Subscriber) -> tuple[tuple[str, BookStream], ...]:
        cached = self._parsed.get(conn)
        if cached is not None and cached[0] is conn.streams:
            return cached[1]
        found = tuple((name, stream) for name in conn.streams if (stream := parse_book_stream(name)) is not None)
        self._parsed[conn] = (conn.streams, found)
        return found

    def _subscribers(self, wanted: Callable[[BookStream], bool]) -> dict[str, tuple[BookStream, list[Any]]]:
        """Per stream name: the stream, and the open connections subscribed to it."""
        index: dict[str, tuple[BookStream, list[Any]]] = {}
        for conn in self.connections:
            if conn.closing:
                continue
            for name, stream in self._book_streams(conn):
                if wanted(stream) and stream.symbol in self.exchange.sources:
                    index.setdefault(name, (stream, []))[1].append(conn)
        return index

    def _send(self, name: str, conns: list[Any], data: Callable[[bool], str]) -> None:
        """Queue one payload to each connection: made once per time unit, wrapped when combined."""
        made: dict[tuple[bool, bool], str] = {}
        for conn in conns:
            key = (conn.microseconds, conn.combined)
            if key not in made:
                text = data(conn.microseconds)
                made[key] = f'{{"stream":"{name}","data":{text}}}' if conn.combined else text
            self.deliver(conn, [made[key]])

    # The book ticker: after every tick --------------------------------------------------------

    def on_trades(self, new: dict[str, list[Trade]]) -> None:
        """An exchange listener: the book tickers of the symbols that traded, where the top moved."""
        if not self.connections:
            return
        index = self._subscribers(lambda stream: stream.kind == BOOK_TICKER and stream.symbol in new)
        for name, (stream, conns) in index.items():
            book = self.exchange.book(stream.symbol)
            top = book.top()
            if top is None or self._tops_sent.get(stream.symbol) == top:
                continue
            self._tops_sent[stream.symbol] = top
            event = book_ticker_event(stream.symbol, book.update_id, top)
            self._send(name, conns, lambda micro, event=event: event)

    # The depth streams: every period ----------------------------------------------------------

    async def run(self) -> None:
        """Every 100 ms the @100ms depth streams, every 1000 ms the others; on a schedule, no drift."""
        started = time.monotonic()
        rounds = 0
        while True:
            rounds += 1
            await asyncio.sleep(max(started + rounds * _BASE_PERIOD_MS / 1000 - time.monotonic(), 0))
            elapsed_ms = rounds * _BASE_PERIOD_MS
            self.publish_depth({period for period in DEPTH_UPDATE_SPEEDS_MS if elapsed_ms % period == 0})

    def publish_depth(self, periods: set[int]) -> None:
        index = self._subscribers(lambda stream: stream.kind != BOOK_TICKER and stream.period_ms in periods)
        live = {(stream.symbol, stream.period_ms) for stream, _ in index.values() if stream.kind == DIFF_DEPTH}
        for key in [key for key in self._cursors if key[1] in periods and key not in live]:
            del self._cursors[key]  # no subscriber: a later one starts from the book as it is then
        now_us = self.exchange.now_us()
        diffs: dict[tuple[str, int], BookChanges | None] = {}  # once per symbol and period, whatever its names
        for name, (stream, conns) in index.items():
            book = self.exchange.book(stream.symbol)
            if stream.kind == PARTIAL_DEPTH:
                text = json.dumps(depth_body(*book.snapshot(stream.levels)), separators=(",", ":"))
                self._send(name, conns, lambda micro, text=text: text)
                continue
            key = (stream.symbol, stream.period_ms)
            if key not in diffs:
                diffs[key] = self._next_changes(key, book)
            changes = diffs[key]
            if changes is not None:
                self._send(name, conns, _diff_event(stream.symbol, now_us, changes))

    def _next_changes(self, key: tuple[str, int], book: OrderBook) -> BookChanges | None:
        """The updates since this stream's last event; a new stream starts from the book as it is."""
        if key not in self._cursors:
            self._cursors[key] = book.update_id
            return None
        changes = book.changes(self._cursors[key])
        if changes is not None:
            self._cursors[key] = changes.last_id
        return changes

    def forget(self, conn: Any) -> None:
        """A connection closed: drop its parsed subscriptions."""
        self._parsed.pop(conn, None)
