"""Where the sandbox's trades come from: a seeded synthetic market, or a replay of Binance dumps.

Both are sources with one method, ``advance(now_us)``, which appends to the symbol's store every
trade that has happened by ``now_us`` and returns them, so the stream and REST see the same trades.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from include.sandbox.store import Trade, TradeStore
from include.sandbox.symbols import SymbolSpec
from include.sandbox.synthetic import Fill, SyntheticModel


class TradeSource(Protocol):
    store: TradeStore

    def advance(self, now_us: int) -> list[Trade]: ...


class SyntheticMarket:
    """The seeded synthetic market (``include.sandbox.synthetic``), served from ``start_us`` on.

    Every trade depends only on the seed, the symbol, the rate and its time: the wall clock only
    decides which part of the one market this sandbox serves, so a restarted sandbox continues it.
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
        self.model = SyntheticModel(spec, rate, seed, first_id, holes)
        self._segment = self.model.segment_of(start_us)
        self._pending: deque[Fill] = deque(f for f in self.model.fills(self._segment) if f.trade.time_us >= start_us)

    def advance(self, now_us: int) -> list[Trade]:
        made: list[Trade] = []
        while True:
            while self._pending and self._pending[0].trade.time_us <= now_us:
                fill = self._pending.popleft()
                self.store.append(fill.trade, fill.agg_id)
                made.append(fill.trade)
            if self._pending or self.model.segment_start_us(self._segment + 1) > now_us:
                return made
            self._segment += 1
            self._pending = deque(self.model.fills(self._segment))


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
