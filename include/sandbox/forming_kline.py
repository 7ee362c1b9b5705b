"""A kline as its stream sees it forming: folded incrementally from the store, trade by trade once.

The stream updates a kline every second or two; recomputing a day's kline from its trades each
time would scan up to a day of trades. This keeps the running figures and folds only the trades
that arrived since the last update. Its row is REST's kline row (``include.sandbox.klines``) for the
same trades: the tests hold the two equal at every interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import compress
from weakref import WeakKeyDictionary

from include.decimals import format_units
from include.sandbox.klines import next_open
from include.sandbox.store import TradeStore


@dataclass(frozen=True, slots=True)
class RangeFigures:
    """What a kline takes from a run of consecutive trades."""

    high: int
    low: int
    volume: int
    quote: int
    taker_volume: int  # the taker bought: the buyer was not the maker
    taker_quote: int


# A symbol's klines of every interval fold the same new trades at each update: the figures of a run
# are made once and shared. The last few runs per store are kept (a closing kline's last run and a
# new kline's first one differ from the others'), weakly: a store that is gone takes them with it.
# The sums are made in C (sum, compress): a Python loop per trade and per interval cost more than
# streaming the trade.
_RUNS_KEPT = 4
_recent_runs: WeakKeyDictionary[TradeStore, dict[tuple[int, int], RangeFigures]] = WeakKeyDictionary()


def range_figures(store: TradeStore, begin: int, stop: int) -> RangeFigures:
    """The figures of the store's trades ``begin`` to ``stop`` (not empty; a store only grows, so a
    run's figures never change)."""
    runs = _recent_runs.setdefault(store, {})
    figures = runs.get((begin, stop))
    if figures is None:
        prices, qtys, quotes = store.prices[begin:stop], store.qtys[begin:stop], store.quotes[begin:stop]
        makers = store.makers[begin:stop]  # 1 where the buyer was the maker: the taker sold
        volume, quote = sum(qtys), sum(quotes)
        taker_volume, taker_quote = volume - sum(compress(qtys, makers)), quote - sum(compress(quotes, makers))
        figures = RangeFigures(max(prices), min(prices), volume, quote, taker_volume, taker_quote)
        if len(runs) >= _RUNS_KEPT:
            del runs[next(iter(runs))]  # the oldest
        runs[(begin, stop)] = figures
    return figures


@dataclass
class FormingKline:
    store: TradeStore
    interval: str
    open_ms: int
    start: int = field(init=False)  # store index of the kline's first trade
    folded: int = field(init=False)  # store index past the last trade folded in
    high: int = 0
    low: int = 0
    volume: int = 0
    quote: int = 0
    taker_volume: int = 0  # the taker bought: the buyer was not the maker
    taker_quote: int = 0

    def __post_init__(self) -> None:
        self.start = self.folded = self.store.index_of_time(self.open_ms * 1000)

    @property
    def close_ms(self) -> int:
        return next_open(self.interval, self.open_ms) - 1

    def fold(self) -> None:
        """Take in the kline's trades the store gained since the last fold."""
        store = self.store
        stop = store.index_of_time((self.close_ms + 1) * 1000)
        if stop <= self.folded:
            return
        begin, self.folded = self.folded, stop
        part = range_figures(store, begin, stop)
        high, low = part.high, part.low
        self.high, self.low = (high, low) if begin == self.start else (max(self.high, high), min(self.low, low))
        self.volume += part.volume
        self.quote += part.quote
        self.taker_volume += part.taker_volume
        self.taker_quote += part.taker_quote

    @property
    def count(self) -> int:
        return self.folded - self.start

    def exists(self) -> bool:
        """Klines start with the bucket of the symbol's first trade: none before it."""
        return self.count > 0 or self.start > 0

    def ids(self) -> tuple[int, int]:
        """The first and last trade ids, -1 and -1 for a kline without trades."""
        if not self.count:
            return -1, -1
        return self.store.ids[self.start], self.store.ids[self.folded - 1]

    def row(self) -> list[object]:
        """REST's 12-column kline row, in milliseconds."""
        prices = self.store.prices
        if self.count:
            o, h, lo, c = prices[self.start], self.high, self.low, prices[self.folded - 1]
        else:  # an empty kline is flat at the previous close
            o = h = lo = c = prices[self.start - 1]
        return [
            self.open_ms,
            format_units(o),
            format_units(h),
            format_units(lo),
            format_units(c),
            format_units(self.volume),
            self.close_ms,
            format_units(self.quote),
            self.count,
            format_units(self.taker_volume),
            format_units(self.taker_quote),
            "0",
        ]
