"""The periodic market streams: klines every 2 s (1 s klines every second) with a final ``x: true``
update as soon as a kline closes, and the 24-hour tickers every second.

One loop per server, not per connection: each payload is computed once per period per symbol (or per
symbol and interval) and queued to every connection subscribed to it (``StreamHub.queue_event``).
Only streams some connection subscribes to are computed. Kline boundaries follow the exchange's
clock, so a test that steers the clock closes a day's kline at once; the update periods are real
time, so a stopped clock still gets its updates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from include.binance.protocol import KLINE_1S_UPDATE_MS, KLINE_UPDATE_MS, TICKER_24HR_MINUTES, TICKER_UPDATE_MS
from include.sandbox import klines as kline_math
from include.sandbox.exchange import Exchange
from include.sandbox.forming_kline import FormingKline
from include.sandbox.stream_events import array_event, kline_event, mini_ticker_event, ticker_event
from include.sandbox.streams import ALL_MINI_TICKERS, ALL_TICKERS, KLINE, MINI_TICKER, TICKER, Stream, stream_name
from include.sandbox.tickers import Window

Top = tuple[int, int, int, int]  # the book's best bid and ask: price and quantity each

# How often the loop looks: a kline's final update goes out at most this long after its close.
STEP_SECONDS = 0.1


class Publisher(Protocol):
    """What the loop needs of the hub: which streams are subscribed, and a way to queue to them."""

    def subscribed(self) -> Mapping[str, Stream]: ...

    def queue_event(self, stream: str, encode: Encode) -> None: ...


class Encode(Protocol):
    def __call__(self, microseconds: bool) -> str: ...


@dataclass
class _KlineState:
    kline: FormingKline  # the kline its subscribers see forming
    sent_at: float  # when its last update went out (monotonic seconds)


class PeriodicStreams:
    def __init__(self, exchange: Exchange, hub: Publisher) -> None:
        self.exchange = exchange
        self.hub = hub
        self.klines: dict[str, _KlineState] = {}
        self.tickers_sent_at: float | None = None
        self.arr_seen: dict[str, tuple[int, int, int]] = {}  # per symbol: what the arrays last showed

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STEP_SECONDS)
            self.step()

    def step(self) -> None:
        wanted = self.hub.subscribed()
        if not wanted:
            self.klines.clear()
            return
        # The clock is read before the tick, so the store holds every trade up to now_us (a kline
        # called closed at now_us has all its trades); read after, a close in between would miss some.
        now_us, now = self.exchange.now_us(), time.monotonic()
        self.exchange.tick()
        self._klines(wanted, now_us, now)
        if self.tickers_sent_at is None or now - self.tickers_sent_at >= TICKER_UPDATE_MS / 1000:
            self.tickers_sent_at = now
            self._tickers(wanted, now_us)

    # Klines ----------------------------------------------------------------------------------

    def _klines(self, wanted: Mapping[str, Stream], now_us: int, now: float) -> None:
        for name in [name for name in self.klines if name not in wanted]:
            del self.klines[name]
        for name, stream in wanted.items():
            if stream.kind != KLINE or stream.symbol not in self.exchange.sources:
                continue
            interval = str(stream.interval)
            current = kline_math.bucket_open(interval, now_us // 1000)
            state = self.klines.get(name)
            if state is None or state.kline.open_ms != current:
                if state is not None:  # the kline it saw forming has closed: its final update
                    self._send_kline(name, state.kline, True, now_us)
                store = self.exchange.sources[str(stream.symbol)].store
                state = self.klines[name] = _KlineState(FormingKline(store, interval, current), now)
                self._send_kline(name, state.kline, False, now_us)
            elif now - state.sent_at >= (KLINE_1S_UPDATE_MS if interval == "1s" else KLINE_UPDATE_MS) / 1000:
                state.sent_at = now
                self._send_kline(name, state.kline, False, now_us)
            else:  # folded every step, a symbol's klines of every interval fold the same runs, summed once
                state.kline.fold()

    def _send_kline(self, name: str, kline: FormingKline, closed: bool, now_us: int) -> None:
        kline.fold()
        if not kline.exists():
            return  # before the symbol's first trade there is no kline
        row, ids = kline.row(), kline.ids()
        self.hub.queue_event(
            name, lambda micro: kline_event(kline.store.symbol, row, ids, kline.interval, closed, now_us, micro)
        )

    # Tickers ---------------------------------------------------------------------------------

    def _tickers(self, wanted: Mapping[str, Stream], now_us: int) -> None:
        arrays = [kind for kind in (ALL_MINI_TICKERS, ALL_TICKERS) if kind in wanted]
        symbols = set(self.exchange.sources) if arrays else set()
        symbols |= {s.symbol for s in wanted.values() if s.kind in (TICKER, MINI_TICKER) and s.symbol}
        windows = {
            symbol: self.exchange.tickers.window(symbol, TICKER_24HR_MINUTES - 1, now_us)
            for symbol in self.exchange.sources
            if symbol in symbols
        }
        # Only the FULL tickers carry the book's top: a mini ticker makes no book (books cost every tick).
        full = ALL_TICKERS in wanted
        tops = {s: self.exchange.book(s).top() for s in windows if full or stream_name(s, TICKER) in wanted}
        for symbol, window in windows.items():
            if (ticker := stream_name(symbol, TICKER)) in wanted:
                top = tops[symbol]
                self.hub.queue_event(ticker, lambda micro, w=window, t=top: ticker_event(w, t, now_us, micro))
            if (mini := stream_name(symbol, MINI_TICKER)) in wanted:
                self.hub.queue_event(mini, lambda micro, w=window: mini_ticker_event(w, now_us, micro))
        if arrays:
            self._arrays(windows, tops, now_us)

    def _arrays(self, windows: dict[str, Window], tops: dict[str, Top | None], now_us: int) -> None:
        """The all-market arrays hold only the symbols whose ticker changed since they last went out."""
        changed = [w for w in windows.values() if self.arr_seen.get(w.symbol) != (w.count, w.first_id, w.last_id)]
        for window in changed:
            self.arr_seen[window.symbol] = (window.count, window.first_id, window.last_id)
        if not changed:
            return
        self.hub.queue_event(
            ALL_MINI_TICKERS, lambda micro: array_event([mini_ticker_event(w, now_us, micro) for w in changed])
        )
        self.hub.queue_event(
            ALL_TICKERS, lambda micro: array_event([ticker_event(w, tops[w.symbol], now_us, micro) for w in changed])
        )
