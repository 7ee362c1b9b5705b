"""Binance klines computed from the sandbox's trades.

Intervals and their alignment follow Binance: UTC buckets, weeks starting on Monday, calendar months.
A bucket with no trades is still present, with volume 0 and open = high = low = close = the previous
close, from the symbol's first trade up to now.
"""

from __future__ import annotations

from datetime import UTC, datetime

from include.decimals import format_units
from include.sandbox.store import TradeStore

_SECOND = 1_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

FIXED_INTERVALS_MS: dict[str, int] = {
    "1s": _SECOND,
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": _DAY,
    "3d": 3 * _DAY,
    "1w": 7 * _DAY,
}
INTERVALS = (*FIXED_INTERVALS_MS, "1M")
_WEEK_OFFSET_MS = 4 * _DAY  # 1970-01-01 was a Thursday; Binance weeks open on Monday


def bucket_open(interval: str, time_ms: int) -> int:
    """Open time (ms) of the bucket that holds ``time_ms``."""
    if interval == "1M":
        moment = datetime.fromtimestamp(time_ms / 1000, UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()) * 1000
    width = FIXED_INTERVALS_MS[interval]
    offset = _WEEK_OFFSET_MS if interval == "1w" else 0
    return time_ms - (time_ms - offset) % width


def next_open(interval: str, open_ms: int) -> int:
    if interval == "1M":
        moment = datetime.fromtimestamp(open_ms / 1000, UTC)
        year, month = divmod(moment.month, 12)
        return int(datetime(moment.year + year, month + 1, 1, tzinfo=UTC).timestamp()) * 1000
    return open_ms + FIXED_INTERVALS_MS[interval]


def bucket_opens(
    interval: str, first_ms: int, now_ms: int, start_ms: int | None, end_ms: int | None, limit: int
) -> list[int]:
    """The open times Binance would return: buckets from the first trade to now, filtered and limited."""
    low = bucket_open(interval, first_ms)
    high = min(bucket_open(interval, now_ms), end_ms if end_ms is not None else now_ms)
    if start_ms is not None:
        opens = []
        cursor = low if start_ms <= low else bucket_open(interval, start_ms)
        if cursor < start_ms:
            cursor = next_open(interval, cursor)
        while cursor <= high and len(opens) < limit:
            opens.append(cursor)
            cursor = next_open(interval, cursor)
        return opens
    # No start: the most recent `limit` buckets up to the end.
    opens = []
    cursor = bucket_open(interval, high)
    while cursor >= low and len(opens) < limit:
        opens.append(cursor)
        cursor = bucket_open(interval, cursor - 1)
    return opens[::-1]


def klines(
    store: TradeStore,
    interval: str,
    now_ms: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: int = 500,
    time_unit_us: bool = False,
) -> list[list[object]]:
    """The 12-column klines of ``/api/v3/klines``; times in ms, or µs when asked."""
    if not len(store):
        return []
    first_ms = store.times[0] // 1000
    opens = bucket_opens(interval, first_ms, now_ms, start_ms, end_ms, limit)
    if not opens:
        return []
    scale = 1000 if time_unit_us else 1
    rows: list[list[object]] = []
    before = store.index_of_time(opens[0] * 1000)
    previous_close = store.prices[before - 1] if before else None
    for open_ms in opens:
        close_ms = next_open(interval, open_ms) - 1
        start = store.index_of_time(open_ms * 1000)
        stop = store.index_of_time((close_ms + 1) * 1000)
        if start == stop:
            price = previous_close if previous_close is not None else store.prices[0]
            o = h = lo = c = price
            volume = quote = buy_volume = buy_quote = 0
        else:
            prices = store.prices[start:stop]
            qtys = store.qtys[start:stop]
            quotes = store.quotes[start:stop]
            makers = store.makers[start:stop]
            o, c, h, lo = prices[0], prices[-1], max(prices), min(prices)
            volume, quote = sum(qtys), sum(quotes)
            # The taker bought when the buyer was not the maker.
            buy_volume = sum(q for q, maker in zip(qtys, makers, strict=True) if not maker)
            buy_quote = sum(q for q, maker in zip(quotes, makers, strict=True) if not maker)
        previous_close = c
        rows.append(
            [
                open_ms * scale,
                format_units(o),
                format_units(h),
                format_units(lo),
                format_units(c),
                format_units(volume),
                close_ms * scale + (scale - 1),
                format_units(quote),
                stop - start,
                format_units(buy_volume),
                format_units(buy_quote),
                "0",
            ]
        )
    return rows
