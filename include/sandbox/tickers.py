"""Rolling-window statistics of a symbol (Binance's tickers), exact, from its trade store.

The store's trades are folded into one-minute aggregates when a ticker is asked for, from where the
last fold stopped, so the trade stream's hot path does no work for them and a day's ticker combines
at most 1441 minutes, never a day of trades. Windows start on a minute: ``ticker/24hr``'s is the
1440 one-minute klines ending with the forming one, so its high, low, volume, quote volume and count
are those of REST's 1m klines over it; ``ticker`` with ``windowSize`` opens ``windowSize`` before
the current minute's open, as Binance documents. Prices are integer 1e-8 units; divisions
(priceChangePercent, weightedAvgPrice) are rounded exactly, in integers, half away from zero.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass

from include.binance.protocol import AVG_PRICE_MINUTES, PERCENT_DECIMALS, ROLLING_WINDOW_UNITS
from include.decimals import SCALE, format_units
from include.sandbox.store import TradeStore
from include.timeutil import MINUTE_US


class MinuteAggregates:
    """Per minute that has trades: its open, first trade index, high, low; running sums of volumes."""

    def __init__(self, store: TradeStore) -> None:
        self.store = store
        self.opens: list[int] = []  # µs
        self.firsts: list[int] = []  # store index of the minute's first trade
        self.highs: list[int] = []
        self.lows: list[int] = []
        # Prefix sums over the minutes: entry k is the total of minutes 0..k-1 (Python ints: no overflow).
        self.volume: list[int] = [0]
        self.quote: list[int] = [0]
        self.folded = 0  # store trades folded so far

    def sync(self) -> None:
        """Fold the trades the store gained since the last call."""
        store, count = self.store, len(self.store)
        index = self.folded
        while index < count:
            minute = store.times[index] - store.times[index] % MINUTE_US
            stop = min(store.index_of_time(minute + MINUTE_US), count)
            self._fold(minute, index, stop)
            index = stop
        self.folded = count

    def _fold(self, minute: int, start: int, stop: int) -> None:
        store = self.store
        prices = store.prices[start:stop]
        sums = (sum(store.qtys[start:stop]), sum(store.quotes[start:stop]))
        if not self.opens or self.opens[-1] != minute:
            self.opens.append(minute)
            self.firsts.append(start)
            self.highs.append(max(prices))
            self.lows.append(min(prices))
            for running, amount in zip(self._running(), sums, strict=True):
                running.append(running[-1] + amount)
            return
        self.highs[-1] = max(self.highs[-1], max(prices))
        self.lows[-1] = min(self.lows[-1], min(prices))
        for running, amount in zip(self._running(), sums, strict=True):
            running[-1] += amount

    def _running(self) -> tuple[list[int], list[int]]:
        return self.volume, self.quote

    def minute_index(self, time_us: int) -> int:
        """Position of the first minute with trades at or after ``time_us``."""
        return bisect_left(self.opens, time_us)

    def first_trade(self, minute: int) -> int:
        """Store index of the first trade of minute position ``minute`` (the fold's end past the last)."""
        return self.firsts[minute] if minute < len(self.firsts) else self.folded


@dataclass(frozen=True)
class Window:
    """The trades of one symbol from ``open_us`` (a minute's open) to ``close_us`` (now)."""

    symbol: str
    open_us: int
    close_us: int
    count: int
    first_id: int  # -1 when the window has no trade, as Binance answers
    last_id: int
    open: int  # prices and quantities in 1e-8 units; 0 when the window has no trade
    high: int
    low: int
    last: int
    last_qty: int
    volume: int
    quote: int
    prev_close: int  # the last price before the window, 0 when there is none

    @property
    def price_change(self) -> int:
        return self.last - self.open

    def price_change_percent(self) -> str:
        if not self.open:
            return format_units(0, PERCENT_DECIMALS)
        return format_units(divide_rounded(self.price_change * 100 * 10**PERCENT_DECIMALS, self.open), PERCENT_DECIMALS)

    def weighted_avg_price(self) -> str:
        return format_units(divide_rounded(self.quote * 10**SCALE, self.volume) if self.volume else 0)


def divide_rounded(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` to the nearest integer, halves away from zero, exactly."""
    quotient, remainder = divmod(abs(numerator), abs(denominator))
    if 2 * remainder >= abs(denominator):
        quotient += 1
    return -quotient if (numerator < 0) != (denominator < 0) else quotient


def window(aggregates: MinuteAggregates, open_us: int, close_us: int) -> Window:
    """The statistics of every trade from ``open_us`` (a minute's open) on; the store holds none after now."""
    aggregates.sync()
    store = aggregates.store
    minute = aggregates.minute_index(open_us)
    start, stop = aggregates.first_trade(minute), aggregates.folded
    prev_close = store.prices[start - 1] if start else 0
    if start == stop:
        return Window(store.symbol, open_us, close_us, 0, -1, -1, 0, 0, 0, 0, 0, 0, 0, prev_close)
    return Window(
        symbol=store.symbol,
        open_us=open_us,
        close_us=close_us,
        count=stop - start,
        first_id=store.ids[start],
        last_id=store.ids[stop - 1],
        open=store.prices[start],
        high=max(aggregates.highs[minute:]),
        low=min(aggregates.lows[minute:]),
        last=store.prices[stop - 1],
        last_qty=store.qtys[stop - 1],
        volume=aggregates.volume[-1] - aggregates.volume[minute],
        quote=aggregates.quote[-1] - aggregates.quote[minute],
        prev_close=prev_close,
    )


def window_open_us(now_us: int, minutes_before: int) -> int:
    """The open of the minute ``minutes_before`` minutes before the current one's."""
    return now_us - now_us % MINUTE_US - minutes_before * MINUTE_US


def window_minutes(window_size: str) -> int | None:
    """Minutes of a ``windowSize`` (``1m``..``59m``, ``1h``..``23h``, ``1d``..``7d``); None if not one."""
    number, unit = window_size[:-1], window_size[-1:]
    if unit not in ROLLING_WINDOW_UNITS or not number.isascii() or not number.isdigit() or number.startswith("0"):
        return None
    largest, minutes = ROLLING_WINDOW_UNITS[unit]
    return int(number) * minutes if int(number) <= largest else None


def average_price(store: TradeStore, now_us: int) -> tuple[int, int]:
    """``avgPrice``: the volume-weighted price of the last 5 minutes' trades, and the last trade's time (µs).

    With no trade in those minutes, the last trade's price; with no trade at all, 0 and time 0.
    """
    if not len(store):
        return 0, 0
    start = store.index_after_time(now_us - AVG_PRICE_MINUTES * MINUTE_US)
    volume = sum(store.qtys[start:])
    if not volume:
        return store.prices[-1], store.times[-1]
    return divide_rounded(sum(store.quotes[start:]) * 10**SCALE, volume), store.times[-1]


class Tickers:
    """The minute aggregates of every symbol of an exchange, made when first asked for."""

    def __init__(self, stores: Mapping[str, TradeStore]) -> None:
        self._stores = stores
        self._aggregates: dict[str, MinuteAggregates] = {}

    def aggregates(self, symbol: str) -> MinuteAggregates:
        found = self._aggregates.get(symbol)
        if found is None:
            found = self._aggregates[symbol] = MinuteAggregates(self._stores[symbol])
        return found

    def window(self, symbol: str, minutes_before: int, now_us: int) -> Window:
        return window(self.aggregates(symbol), window_open_us(now_us, minutes_before), now_us)
