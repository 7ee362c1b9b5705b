"""The sandbox's synthetic market: for a seed, a symbol and a rate, one market that has always existed.

Why this shape. A sandbox is stopped and started again on the same data folder (``make up`` twice),
and what it served before is already in the lake. A market that started at "now minus history"
with id 1 handed out the same ids again with other prices and times. So nothing here depends on
when the sandbox started: every trade is a function of (seed, symbol, rate, time), and a restarted
sandbox serves the same trade under the same id, and never an id of the past for another trade.

- **Segments.** Time is cut into fixed segments from a fixed epoch (``EPOCH_US``). Segment k's
  trades depend only on (seed, symbol, rate, k), so any part of the market is made without making
  what came before it: ``--history`` is the same trades of the past window, and a week of history,
  or a sandbox started years after the epoch, costs only the segments served.
- **Ids in O(1).** Trades are numbered from the epoch. Segment k starts at trade position
  ``floor(rate*S*k + jitter(k))``, the jitter a hash of k in ``[0, rate*S/2)``: the first id of any
  segment is known without generating the past, segments hold between half and one and a half
  times ``rate*S`` trades (the long-run average is exactly the rate), and, computed with exact
  fractions, ids strictly increase. ``S`` is 10 s, longer for very slow rates (``rate*S >= 2``), so
  that every segment holds at least one trade.
- **Aggregate ids in O(1) too.** Binance numbers aggregate trades contiguously. A segment's trades
  beyond its first are merged into the previous aggregate at a fixed long-run share, counted with
  the same floor construction (``floor(c * (position - k))``, at most one fewer than the
  segment's trades), so each segment's first aggregate id is known and the ids are contiguous.
- **Times.** Inside a segment, taker orders arrive by a calm/burst process (calm spells average
  20 s, bursts 2 s at 8x the calm rate), seeded by the segment and rescaled to fit it; exponential
  spells are memoryless, so starting each segment in a regime drawn by its share of time is the
  stationary process. Orders have distinct microseconds; an order sweeping several price levels
  makes several aggregates in the same microsecond, each of one or more fills at one price.
- **Prices.** The price at each segment boundary is multi-scale value noise (a minute to a week)
  around the symbol's start price, a pure function of the boundary. Inside a segment the price
  walks by ticks and is bridged to the next boundary, so the path is continuous across segments
  without replaying history. Prices are whole ticks, quantities whole steps, and
  quote = price x quantity is exact at 8 decimals (the symbol spec guarantees it).
- **Holes** (``--hole SYMBOL:ID``) are ids whose trade is left out: the id never exists, every
  other trade keeps its id.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from hashlib import blake2b

from include.decimals import UNIT
from include.sandbox.store import Trade
from include.sandbox.symbols import SymbolSpec
from include.timeutil import MICROS_PER_SECOND

EPOCH_US = 1_704_067_200 * MICROS_PER_SECOND  # 2024-01-01T00:00:00Z: the market's first instant
SEGMENT_SECONDS = 10  # at least; longer when the rate is so slow that a segment would hold under two trades
_MIN_TRADES_PER_SEGMENT = 2  # on average; so that the jitter can keep every segment non-empty

# Calm spells average 20 s, bursts 2 s at 8x the calm rate.
_CALM_SECONDS, _BURST_SECONDS, _BURST_FACTOR = 20.0, 2.0, 8.0
_BURST_SHARE = _BURST_SECONDS / (_CALM_SECONDS + _BURST_SECONDS)
# On average 1.375 fills per aggregate: trades beyond a segment's first merge at this share.
_MERGED_SHARE = 1 - 1 / Fraction(11, 8)
# A taker order sweeps a further price level with this probability, after each level it fills.
_SWEEP_ON = 0.2
# (period in seconds, relative amplitude) of the price noise: basis points a minute, percent a week.
_PRICE_SCALES = ((60, 0.0002), (600, 0.0008), (3600, 0.002), (6 * 3600, 0.006), (86400, 0.015), (7 * 86400, 0.04))
_WALK_STEPS = (-2, -1, -1, 0, 0, 0, 1, 1, 2)  # ticks between one taker order and the next


def _hash_unit(*parts: object) -> int:
    """A 64-bit integer that depends only on ``parts``, the same in every process."""
    digest = blake2b(":".join(str(part) for part in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def segment_seconds(rate: float) -> int:
    """The segment length for ``rate``: 10 s, or long enough to hold two trades on average (exactly)."""
    return max(SEGMENT_SECONDS, math.ceil(_MIN_TRADES_PER_SEGMENT / Fraction(rate)))


@dataclass(frozen=True)
class Fill:
    """One trade of a segment with the aggregate it belongs to."""

    trade: Trade
    agg_id: int


@dataclass(frozen=True)
class _Order:
    """A taker order: its microsecond, its side and the fills of each price level it swept."""

    time_us: int
    taker_sells: bool
    levels: list[int]  # fills per price level, one aggregate each


class SyntheticModel:
    """The market of one symbol: segment arithmetic, boundary prices and each segment's trades."""

    def __init__(
        self, spec: SymbolSpec, rate: float, seed: int, first_id: int = 1, holes: frozenset[int] = frozenset()
    ) -> None:
        if not rate > 0:
            raise ValueError(f"{spec.symbol}: the trade rate must be positive, got {rate!r}")
        self.spec = spec
        self.rate = rate
        self.seed = seed
        self.first_id = first_id
        self.holes = holes
        self.segment_us = segment_seconds(rate) * MICROS_PER_SECOND
        self._per_segment = Fraction(rate) * segment_seconds(rate)  # exact: a float is a fraction
        self._jitter = self._per_segment / 2  # at most per_segment - 1 (it is at least 2): no segment is empty
        self._origin = self._raw_position(0)
        self._start_ticks = spec.start_price_units // spec.tick_units
        self._typical_steps = max(1, spec.typical_qty_units // spec.step_units)
        if 2 * self._per_segment > self.segment_us:
            raise ValueError(f"{spec.symbol}: a rate of {rate} trades/s is more than one per microsecond")

    # Segment arithmetic ------------------------------------------------------------------------

    def segment_of(self, time_us: int) -> int:
        """The segment holding ``time_us``; the market begins at the epoch."""
        return max(0, (time_us - EPOCH_US) // self.segment_us)

    def segment_start_us(self, segment: int) -> int:
        return EPOCH_US + segment * self.segment_us

    def _raw_position(self, segment: int) -> int:
        jitter = Fraction(_hash_unit(self.seed, self.spec.symbol, "count", segment), 2**64) * self._jitter
        return math.floor(self._per_segment * segment + jitter)

    def first_position(self, segment: int) -> int:
        """How many trades the market made before ``segment``."""
        return self._raw_position(segment) - self._origin

    def first_agg_position(self, segment: int) -> int:
        """How many aggregate trades the market made before ``segment``."""
        extra = self.first_position(segment) - segment  # every segment's trades beyond its first
        return self.first_position(segment) - math.floor(_MERGED_SHARE * extra)

    def first_id_at_or_after(self, time_us: int) -> int:
        """The id of the first trade at or after ``time_us``, holes aside; it may lie in the future."""
        segment = self.segment_of(time_us)
        later = [f.trade.trade_id for f in self.fills(segment) if f.trade.time_us >= time_us]
        return later[0] if later else self.first_id + self.first_position(segment + 1)

    # Prices ------------------------------------------------------------------------------------

    def _lattice(self, period: int, cell: int) -> float:
        return _hash_unit(self.seed, self.spec.symbol, "price", period, cell) / 2**63 - 1.0

    def boundary_ticks(self, segment: int) -> int:
        """The price, in ticks, at the start of ``segment``: smooth noise of several time scales."""
        seconds = segment * self.segment_us // MICROS_PER_SECOND
        offset = 0.0
        for period, amplitude in _PRICE_SCALES:
            cell, within = divmod(seconds, period)
            weight = within / period
            weight = weight * weight * (3 - 2 * weight)  # smoothstep: no kinks at cell edges
            low, high = self._lattice(period, cell), self._lattice(period, cell + 1)
            offset += amplitude * (low + (high - low) * weight)
        return max(1, round(self._start_ticks * math.exp(offset)))

    # One segment's trades ----------------------------------------------------------------------

    def fills(self, segment: int) -> list[Fill]:
        """Every trade of ``segment`` (holes left out), in id order, with its aggregate id."""
        count = self.first_position(segment + 1) - self.first_position(segment)
        aggregates = self.first_agg_position(segment + 1) - self.first_agg_position(segment)
        rng = random.Random(f"{self.seed}:{self.spec.symbol}:{segment}")
        sizes = _aggregate_sizes(rng, count, aggregates)
        orders = self._orders(rng, segment, sizes)
        prices = self._price_levels(rng, segment, orders)
        trade_id = self.first_id + self.first_position(segment)
        agg_id = self.first_agg_position(segment)
        out: list[Fill] = []
        for order, order_prices in zip(orders, prices, strict=True):
            for fills, price in zip(order.levels, order_prices, strict=True):
                for _ in range(fills):
                    trade = self._trade(rng, trade_id, order, price)  # made even for a hole: same draws
                    if trade_id not in self.holes:
                        out.append(Fill(trade, agg_id))
                    trade_id += 1
                agg_id += 1
        return out

    def _orders(self, rng: random.Random, segment: int, sizes: list[int]) -> list[_Order]:
        """Group the aggregates into taker orders, each at its own microsecond of the segment."""
        groups: list[list[int]] = []
        for size in sizes:
            if groups and rng.random() < _SWEEP_ON:
                groups[-1].append(size)  # the same order sweeps one more price level
            else:
                groups.append([size])
        arrivals = _arrivals(rng, self.rate, len(groups))
        span = self.segment_us - len(groups)  # room for one distinct microsecond per order
        start = self.segment_start_us(segment)
        return [
            _Order(start + int(arrivals[i] * span / arrivals[-1]) + i, rng.random() < 0.5, group)
            for i, group in enumerate(groups)
        ]

    def _price_levels(self, rng: random.Random, segment: int, orders: list[_Order]) -> list[list[int]]:
        """Ticks of each order's levels: a walk bridged from this boundary's price to the next's."""
        walk, paths = 0, []
        for order in orders:
            walk += rng.choice(_WALK_STEPS)
            sweep = -1 if order.taker_sells else 1  # sweeping walks the book: sells lower, buys higher
            paths.append([walk + sweep * level for level in range(len(order.levels))])
            walk = paths[-1][-1]
        start, end = self.boundary_ticks(segment), self.boundary_ticks(segment + 1)
        drift = end - start - walk
        return [
            [max(1, start + ticks + round(drift * (i + 1) / len(orders))) for ticks in path]
            for i, path in enumerate(paths)
        ]

    def _trade(self, rng: random.Random, trade_id: int, order: _Order, ticks: int) -> Trade:
        price = ticks * self.spec.tick_units
        qty = max(1, int(rng.lognormvariate(0.0, 1.2) * self._typical_steps)) * self.spec.step_units
        return Trade(trade_id, order.time_us, price, qty, price * qty // UNIT, order.taker_sells)


def _aggregate_sizes(rng: random.Random, count: int, aggregates: int) -> list[int]:
    """Split ``count`` trades into ``aggregates`` groups of at least one, at random."""
    sizes = [1] * aggregates
    for _ in range(count - aggregates):
        sizes[rng.randrange(aggregates)] += 1
    return sizes


def _arrivals(rng: random.Random, rate: float, orders: int) -> list[float]:
    """Arrival times (seconds, unscaled) of ``orders`` orders and of the one after them."""
    # Orders per second: aggregates per trade, then the share of aggregates that start an order. The
    # calm rate is scaled so that the long-run average over calm and bursts is that rate.
    order_rate = rate * float(1 - _MERGED_SHARE) * (1 - _SWEEP_ON)
    calm_rate = order_rate / (1 - _BURST_SHARE + _BURST_SHARE * _BURST_FACTOR)
    burst = rng.random() < _BURST_SHARE
    regime_ends = rng.expovariate(1 / (_BURST_SECONDS if burst else _CALM_SECONDS))
    clock, times = 0.0, []
    for _ in range(orders + 1):
        clock += rng.expovariate(calm_rate * (_BURST_FACTOR if burst else 1.0))
        while clock >= regime_ends:
            burst = not burst
            regime_ends += rng.expovariate(1 / (_BURST_SECONDS if burst else _CALM_SECONDS))
        times.append(clock)
    return times
