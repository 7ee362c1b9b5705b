"""Where the sandbox's trades come from: a seeded synthetic market, or a replay of Binance dumps.

Both are sources with one method, ``advance(now_us)``, which appends to the symbol's store every
trade that has happened by ``now_us`` and returns them, so the stream and REST see the same trades.
"""

from __future__ import annotations

import random
from typing import Protocol

from include.sandbox.store import Trade, TradeStore
from include.sandbox.symbols import SymbolSpec

# The market alternates calm and bursts. Calm spells average 20 s, bursts 2 s at 8x the calm rate;
# the calm rate is scaled so that the long-run average is exactly the requested rate.
_CALM_SECONDS, _BURST_SECONDS, _BURST_FACTOR = 20.0, 2.0, 8.0
_CALM_FACTOR = (_CALM_SECONDS + _BURST_SECONDS) / (_CALM_SECONDS + _BURST_SECONDS * _BURST_FACTOR)
# A taker order often sweeps several resting orders: extra fills in the same microsecond.
_SWEEP_PROBABILITY, _MAX_SWEEP = 0.25, 4
_MEAN_FILLS = 1 + _SWEEP_PROBABILITY * (_MAX_SWEEP - 1) / 2  # so --rate counts trades, not orders


class TradeSource(Protocol):
    store: TradeStore

    def advance(self, now_us: int) -> list[Trade]: ...


class SyntheticMarket:
    """A deterministic random walk on the symbol's tick and step sizes.

    The sequence of trades (ids, prices, quantities, sides, gaps between trades) depends only on the
    seed and the symbol; the wall clock only decides where the sequence starts.
    """

    def __init__(
        self,
        spec: SymbolSpec,
        rate: float,
        seed: int,
        start_us: int,
        first_id: int = 1,
        holes: frozenset[int] = frozenset(),
    ) -> None:
        self.spec = spec
        self.store = TradeStore(spec.symbol)
        self._rate = rate
        self._rng = random.Random(f"{seed}:{spec.symbol}")
        self._next_id = first_id
        self._holes = holes
        self._price_ticks = spec.start_price_units // spec.tick_units
        self._clock_us = float(start_us)
        self._burst = False
        self._regime_ends_us = start_us + self._spell_us()
        self._pending: list[Trade] = self._next_fills()

    def _spell_us(self) -> float:
        mean = _BURST_SECONDS if self._burst else _CALM_SECONDS
        return self._rng.expovariate(1.0 / mean) * 1e6

    def _gap_us(self) -> float:
        factor = _CALM_FACTOR * (_BURST_FACTOR if self._burst else 1.0)
        return self._rng.expovariate(self._rate * factor / _MEAN_FILLS) * 1e6

    def _next_fills(self) -> list[Trade]:
        """One taker order: one fill, or a sweep of a few fills at the same time."""
        self._clock_us += self._gap_us()
        while self._clock_us >= self._regime_ends_us:
            self._burst = not self._burst
            self._regime_ends_us += self._spell_us()
        rng = self._rng
        taker_sells = rng.random() < 0.5
        self._price_ticks = max(1, self._price_ticks + rng.choice((-2, -1, -1, 0, 0, 0, 1, 1, 2)))
        fills = 1 + (rng.randrange(_MAX_SWEEP) if rng.random() < _SWEEP_PROBABILITY else 0)
        time_us = int(self._clock_us)
        trades = []
        for fill in range(fills):
            if fill and rng.random() < 0.5:
                # Sweeping walks the book: sells fill lower, buys higher.
                self._price_ticks = max(1, self._price_ticks + (-1 if taker_sells else 1))
            typical_steps = max(1, self.spec.typical_qty_units // self.spec.step_units)
            steps = max(1, int(rng.lognormvariate(0.0, 1.2) * typical_steps))
            price = self._price_ticks * self.spec.tick_units
            qty = steps * self.spec.step_units
            while self._next_id in self._holes:
                self._next_id += 1  # an exchange-side hole: this id never existed
            trades.append(Trade(self._next_id, time_us, price, qty, price * qty // 10**8, taker_sells))
            self._next_id += 1
        return trades

    def advance(self, now_us: int) -> list[Trade]:
        made: list[Trade] = []
        while self._pending[0].time_us <= now_us:
            for trade in self._pending:
                self.store.append(trade)
            made.extend(self._pending)
            self._pending = self._next_fills()
        return made


class ReplayMarket:
    """Trades from Binance dump files, either at their original times or shifted to now.

    ``historical``: every trade is history at its original time from the start; nothing streams.
    ``live``: the first trade plays at ``start_us`` and the rest follow at ``speed`` times their
    original pace, with their times shifted accordingly.
    """

    def __init__(self, symbol: str, trades: list[Trade], mode: str, speed: float, start_us: int) -> None:
        self.store = TradeStore(symbol)
        self._trades = trades
        self._cursor = 0
        self._live = mode == "live"
        if not self._live:
            for trade in trades:
                self.store.append(trade)
            self._cursor = len(trades)
        self._origin_us = trades[0].time_us if trades else 0
        self._start_us = start_us
        self._speed = speed

    def _shifted(self, trade: Trade) -> Trade:
        offset = int((trade.time_us - self._origin_us) / self._speed)
        return Trade(
            trade.trade_id,
            self._start_us + offset,
            trade.price,
            trade.qty,
            trade.quote_qty,
            trade.is_buyer_maker,
        )

    def advance(self, now_us: int) -> list[Trade]:
        made: list[Trade] = []
        while self._cursor < len(self._trades):
            trade = self._shifted(self._trades[self._cursor])
            if trade.time_us > now_us:
                break
            self.store.append(trade)
            made.append(trade)
            self._cursor += 1
        return made
