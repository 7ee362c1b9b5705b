"""Every trade the sandbox ever made, per symbol, in compact columns.

The store is the single source of truth of the sandbox: the WebSocket stream publishes from it,
and REST history, aggTrades and klines are all read from it, so they agree trade for trade.
Prices and quantities are integer 1e-8 units (see ``include.decimals``); times are microseconds.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass


@dataclass(frozen=True)
class Trade:
    trade_id: int
    time_us: int
    price: int
    qty: int
    quote_qty: int
    is_buyer_maker: bool


@dataclass(frozen=True)
class AggTrade:
    agg_id: int
    price: int
    qty: int
    first_id: int
    last_id: int
    time_us: int
    is_buyer_maker: bool


class TradeStore:
    """Append-only trades of one symbol, ordered by trade id and by time."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.ids = array("q")
        self.times = array("q")
        self.prices = array("q")
        self.qtys = array("q")
        self.quotes = array("q")
        self.makers = array("b")
        # Aggregate trades: trades at the same time, price and side fold into one, as on Binance.
        self.agg_ids = array("q")  # the id of each aggregate, contiguous as Binance's
        self.agg_first = array("q")  # index of the first trade of each aggregate
        self.agg_last = array("q")

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, trade: Trade, agg_id: int | None = None) -> None:
        """Add the next trade. A source that numbers its aggregates passes ``agg_id`` (the trade joins
        the last aggregate when the id is the same); otherwise consecutive trades at the same time,
        price and side are one aggregate, numbered on from the last."""
        if self.ids and (trade.trade_id <= self.ids[-1] or trade.time_us < self.times[-1]):
            raise ValueError(f"{self.symbol}: trade {trade.trade_id} is out of order")
        index = len(self.ids)
        self.ids.append(trade.trade_id)
        self.times.append(trade.time_us)
        self.prices.append(trade.price)
        self.qtys.append(trade.qty)
        self.quotes.append(trade.quote_qty)
        self.makers.append(trade.is_buyer_maker)
        if agg_id is None and self._joins_last_aggregate(index):
            agg_id = self.agg_ids[-1]
        elif agg_id is None:
            agg_id = self.agg_ids[-1] + 1 if self.agg_ids else 0
        if self.agg_ids and agg_id == self.agg_ids[-1]:
            self.agg_last[-1] = index
            return
        if self.agg_ids and agg_id < self.agg_ids[-1]:
            raise ValueError(f"{self.symbol}: aggregate {agg_id} of trade {trade.trade_id} is out of order")
        self.agg_ids.append(agg_id)
        self.agg_first.append(index)
        self.agg_last.append(index)

    def _joins_last_aggregate(self, index: int) -> bool:
        """Whether the trade just stored at ``index`` continues the last aggregate."""
        last = self.agg_last[-1] if self.agg_last else -1
        return (
            last >= 0
            and self.times[last] == self.times[index]
            and self.prices[last] == self.prices[index]
            and self.makers[last] == self.makers[index]
            and self.ids[last] == self.ids[index] - 1
        )

    def trade(self, index: int) -> Trade:
        return Trade(
            self.ids[index],
            self.times[index],
            self.prices[index],
            self.qtys[index],
            self.quotes[index],
            bool(self.makers[index]),
        )

    def trades(self, start: int, stop: int) -> list[Trade]:
        return [self.trade(i) for i in range(max(start, 0), min(stop, len(self.ids)))]

    def index_of_id(self, trade_id: int) -> int:
        """Index of the first trade whose id is at or after ``trade_id``."""
        return bisect_left(self.ids, trade_id)

    def index_of_time(self, time_us: int) -> int:
        """Index of the first trade at or after ``time_us``."""
        return bisect_left(self.times, time_us)

    def index_after_time(self, time_us: int) -> int:
        """Index of the first trade strictly after ``time_us``."""
        return bisect_right(self.times, time_us)

    # Aggregate trades, by position; ``agg_index_of_id`` finds a position from an id.
    def agg_count(self) -> int:
        return len(self.agg_first)

    def agg_index_of_id(self, agg_id: int) -> int:
        """Index of the first aggregate whose id is at or after ``agg_id``."""
        return bisect_left(self.agg_ids, agg_id)

    def agg(self, index: int) -> AggTrade:
        first, last = self.agg_first[index], self.agg_last[index]
        qty = sum(self.qtys[first : last + 1])
        return AggTrade(
            self.agg_ids[index],
            self.prices[first],
            qty,
            self.ids[first],
            self.ids[last],
            self.times[first],
            bool(self.makers[first]),
        )

    def agg_index_of_time(self, time_us: int) -> int:
        """Index of the first aggregate at or after ``time_us``."""
        return bisect_left(self.agg_first, self.index_of_time(time_us))

    def agg_index_after_time(self, time_us: int) -> int:
        return bisect_left(self.agg_first, self.index_after_time(time_us))
