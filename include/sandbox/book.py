"""A symbol's order book: synthetic, but consistent with its trades and alive.

Why this shape. The sandbox has trades, not orders, so the book is made up; what a client can check
must still hold: the best bid is below the last trade's price and the best ask above it, every level
is a whole tick and a whole step, and a client that follows Binance's procedure (buffer the diff
stream, fetch a snapshot, apply the diffs after it) ends with the book a later snapshot shows.

- **Levels** are contiguous ticks: bids from ``bid_top`` down, asks from ``ask_top`` up, ``DEPTH``
  of each (Binance's largest snapshot), never at a price below one tick. ``bid_top`` is the largest
  tick strictly below the last price, ``ask_top`` the smallest strictly above it.
- **Quantities** are a cheap integer hash of (seed, symbol, price, the level's version): the book
  holds no quantities, only the versions of the few levels that changed, so a book costs the same
  at 5000 levels as at 5.
- **Updates.** ``apply(last_price)`` after a tick that made trades moves the levels with the price
  (crossed levels go, new tops come, the far ends are trimmed and extended so each side keeps its
  depth) and gives a few levels near the top new quantities. Every level that changed is in the
  update, with quantity 0 when it left: applied to the previous book, an update gives this one.
  Each update has the next id; a bounded history of them lets the stream hub send diffs.
- A jump of more than the depth (the first trade, a replay's start) replaces every level: one update.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from hashlib import blake2b

from include.binance.protocol import DEPTH_MAX_LIMIT
from include.sandbox.symbols import SymbolSpec

DEPTH = DEPTH_MAX_LIMIT  # levels per side: a snapshot of Binance's largest limit shows the whole book
HISTORY_SECONDS = 60.0  # updates kept for the diff streams (they read every 100 ms of real time)
ALIVE_LEVELS = 10  # levels at the top of each side among which quantities change...
ALIVE_CHANGES = 2  # ...this many per side per update
_MASK = (1 << 64) - 1
_PRICE_SPREAD, _VERSION_SPREAD = 0x100000001B3, 0x9E3779B97F4A7C15  # odd multipliers: distinct inputs

Level = tuple[int, int]  # (price, quantity) in 1e-8 units


def _mix(value: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit integer from any integer, cheaply."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """One change of the book: every level that changed, with its new quantity (0: gone)."""

    update_id: int
    time_us: int
    bids: dict[int, int]
    asks: dict[int, int]


@dataclass(frozen=True, slots=True)
class BookChanges:
    """Consecutive updates merged, as one diff event carries them: ``U`` to ``u``."""

    first_id: int
    last_id: int
    bids: dict[int, int]
    asks: dict[int, int]


def _side_range(top: int, step: int, downward: bool) -> range:
    """The prices of one side, best first: ``DEPTH`` ticks from ``top``, none below one tick."""
    if top < step:
        return range(0)
    if downward:
        return range(top, max(top - (DEPTH - 1) * step, step) - step, -step)
    return range(top, top + DEPTH * step, step)


def _outside(prices: range, other: range) -> list[int]:
    """The prices of ``prices`` that are not in ``other`` (both on the same tick grid)."""
    if not other:
        return list(prices)
    return _clip_out(prices, min(other[0], other[-1]), max(other[0], other[-1]))


def _clip_out(prices: range, low: int, high: int) -> list[int]:
    """The prices of a contiguous range below ``low`` or above ``high``, without visiting the rest."""
    if not prices:
        return []
    step = abs(prices.step)
    first, last = min(prices[0], prices[-1]), max(prices[0], prices[-1])
    below = range(first, min(last, low - step) + 1, step)
    above = range(max(first, high + step), last + 1, step)
    return [*below, *above]


class OrderBook:
    """The synthetic book of one symbol; see the module docstring."""

    def __init__(self, spec: SymbolSpec, seed: int, last_price: int | None, now_us: int) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self._key = int.from_bytes(blake2b(f"book:{seed}:{spec.symbol}".encode(), digest_size=8).digest(), "big")
        self._max_steps = max(1, 4 * spec.typical_qty_units // spec.step_units)
        self._versions: dict[int, int] = {}  # the levels whose quantity changed since they entered
        self.bids = range(0)
        self.asks = range(0)
        self.update_id = 0
        self.history: deque[BookUpdate] = deque()
        self._kept_at: deque[float] = deque()  # when each update of ``history`` was made (monotonic s)
        if last_price is not None:
            self._move(last_price)
            self.update_id = 1  # the book as it is made is update 1; history holds what follows

    # Reading -----------------------------------------------------------------------------------

    def quantity(self, price: int) -> int:
        """A level's quantity: whole steps, from one step up to about four typical trades."""
        mixed = _mix(self._key + price * _PRICE_SPREAD + self._versions.get(price, 0) * _VERSION_SPREAD)
        return self.spec.step_units * (1 + mixed % self._max_steps)

    def snapshot(self, limit: int) -> tuple[int, list[Level], list[Level]]:
        """``(lastUpdateId, bids best first, asks best first)``, at most ``limit`` levels a side."""
        quantity = self.quantity
        bids = [(price, quantity(price)) for price in self.bids[:limit]]
        asks = [(price, quantity(price)) for price in self.asks[:limit]]
        return self.update_id, bids, asks

    def top(self) -> tuple[int, int, int, int] | None:
        """``(bid price, bid qty, ask price, ask qty)``; None while the symbol has no trade yet."""
        if not self.bids or not self.asks:
            return None
        bid, ask = self.bids[0], self.asks[0]
        return bid, self.quantity(bid), ask, self.quantity(ask)

    def changes(self, after_update_id: int) -> BookChanges | None:
        """The updates after ``after_update_id`` merged (later quantities win); None if there are none.

        Update ids are consecutive, so the start is found by arithmetic. Updates older than the
        history are gone: the merge then starts later than asked, and its ``first_id`` shows the gap.
        """
        if not self.history or after_update_id >= self.update_id:
            return None
        start = max(after_update_id + 1 - self.history[0].update_id, 0)
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for index in range(start, len(self.history)):
            update = self.history[index]
            bids.update(update.bids)
            asks.update(update.asks)
        return BookChanges(self.history[start].update_id, self.update_id, bids, asks)

    # Changing ----------------------------------------------------------------------------------

    def apply(self, last_price: int, now_us: int) -> BookUpdate:
        """Move the book to ``last_price`` and refresh a few top levels: the next update."""
        bids, asks = self._move(last_price)
        self._refresh(self.bids, bids)
        self._refresh(self.asks, asks)
        self.update_id += 1
        update = BookUpdate(self.update_id, now_us, bids, asks)
        self.history.append(update)
        # Kept by real time, not the exchange's clock: the diff streams read it every 100 ms of real
        # time, and a clock moved forward (a test steering it) would otherwise drop what they still need.
        self._kept_at.append(time.monotonic())
        while self._kept_at and self._kept_at[0] < self._kept_at[-1] - HISTORY_SECONDS:
            self._kept_at.popleft()
            self.history.popleft()
        return update

    def _move(self, last_price: int) -> tuple[dict[int, int], dict[int, int]]:
        """Put the tops around ``last_price``: the levels that left (quantity 0) and those that came."""
        tick = self.spec.tick_units
        below = last_price - tick if last_price % tick == 0 else last_price - last_price % tick
        above = below + tick if last_price % tick else last_price + tick
        new_bids, new_asks = _side_range(below, tick, True), _side_range(above, tick, False)
        # Every side's leavers before any side's newcomers: a price that leaves the asks and joins
        # the bids in one move must join with the quantity a snapshot will show (version 0).
        bids = self._leaving(self.bids, new_bids)
        asks = self._leaving(self.asks, new_asks)
        self._coming(new_bids, self.bids, bids)
        self._coming(new_asks, self.asks, asks)
        self.bids, self.asks = new_bids, new_asks
        return bids, asks

    def _leaving(self, old: range, new: range) -> dict[int, int]:
        changed = dict.fromkeys(_outside(old, new), 0)
        for price in changed:
            self._versions.pop(price, None)  # a level that comes back is a new one
        return changed

    def _coming(self, new: range, old: range, changed: dict[int, int]) -> None:
        for price in _outside(new, old):
            changed[price] = self.quantity(price)

    def _refresh(self, side: range, changed: dict[int, int]) -> None:
        """New quantities for ``ALIVE_CHANGES`` of the side's top levels, chosen by the update id."""
        levels = min(ALIVE_LEVELS, len(side))
        for change in range(min(ALIVE_CHANGES, levels)):
            price = side[_mix(self._key ^ (self.update_id << 8) ^ change) % levels]
            self._versions[price] = self._versions.get(price, 0) + 1
            changed[price] = self.quantity(price)
