"""The sandbox exchange's state: its markets, its clock, its limits and its faults.

The REST handlers and the WebSocket hub both read from here; ``tick`` moves the markets forward
and hands every new trade to the hub, in id order per symbol.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from include.sandbox.book import OrderBook
from include.sandbox.config import SandboxConfig
from include.sandbox.faults import FaultRecord
from include.sandbox.limits import WeightLimiter
from include.sandbox.market import ReplayMarket, SyntheticMarket, TradeSource
from include.sandbox.replay import load_replay
from include.sandbox.store import Trade
from include.sandbox.symbols import SymbolSpec, spec_for
from include.sandbox.tickers import Tickers
from include.timeutil import MINUTE_US, now_us

# The history is made in steps of this much market time, each step's trades dropped before the next
# is made: a day of history then never holds a day of Trade objects at once, only the stores' columns.
_HISTORY_STEP_US = 10 * MINUTE_US


class Exchange:
    def __init__(self, config: SandboxConfig, clock_us: Callable[[], int] = now_us) -> None:
        self.config = config
        self.clock_us = clock_us
        self.started_us = clock_us()
        self.history_start_us = self.started_us - int(config.history_seconds * 1e6)
        if config.history_since_us is not None:
            self.history_start_us = min(self.history_start_us, config.history_since_us)
        self.limiter = WeightLimiter(config.weight_limit, config.weight_window_seconds)
        self.faults = config.faults
        self.record = FaultRecord()
        self.rng = random.Random(config.seed)
        self.specs: dict[str, SymbolSpec] = {}
        self.sources: dict[str, TradeSource] = {}
        replays = load_replay(list(config.replay))
        # A live replay starts once the files are loaded (a large dump takes a while), after any delay.
        self.replay_started_us = clock_us() + int(config.replay_delay_seconds * 1e6)
        for symbol, trades in replays.items():
            self.specs[symbol] = spec_for(symbol)
            self.sources[symbol] = ReplayMarket(
                symbol, trades, config.replay_mode, config.speed, self.replay_started_us
            )
        for symbol in config.symbols:
            if symbol in self.sources:
                continue
            self.specs[symbol] = spec_for(symbol)
            self.sources[symbol] = SyntheticMarket(
                self.specs[symbol],
                config.symbol_rates.get(symbol, config.rate),
                config.seed,
                start_us=self.history_start_us,
                first_id=config.first_trade_id,
                holes=config.holes.get(symbol, frozenset()),
            )
        self.listeners: list[Callable[[dict[str, list[Trade]]], None]] = []
        self.tickers = Tickers({symbol: source.store for symbol, source in self.sources.items()})
        self.books: dict[str, OrderBook] = {}  # made on first use: books nobody asked for cost nothing
        for moment in range(self.history_start_us, self.started_us, _HISTORY_STEP_US):
            for source in self.sources.values():
                source.advance(moment)
        self.tick()

    def now_us(self) -> int:
        return self.clock_us()

    def book(self, symbol: str) -> OrderBook:
        """The order book of a symbol the exchange trades, made on first use and kept from then on."""
        book = self.books.get(symbol)
        if book is None:
            store = self.sources[symbol].store
            last_price = store.prices[-1] if len(store) else None
            book = self.books[symbol] = OrderBook(self.specs[symbol], self.config.seed, last_price, self.clock_us())
        return book

    def tick(self) -> None:
        """Advance every market to now, move the order books of the symbols that traded, and hand
        the new trades to the listeners (the stream hub).

        REST handlers tick too, so history is never behind the clock; whoever ticks, every trade
        is handed on exactly once, and the books are moved before the listeners read them.
        """
        now = self.clock_us()
        made = {symbol: source.advance(now) for symbol, source in self.sources.items()}
        new = {symbol: trades for symbol, trades in made.items() if trades}
        for symbol, book in self.books.items():
            if symbol in new:
                book.apply(new[symbol][-1].price, now)
        if new:
            for listener in self.listeners:
                listener(new)
