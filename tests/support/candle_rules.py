"""The marts' candle rules in plain Python, row by row with Decimals: the tests' own oracle.

docs/architecture.md, "The live edge", part 1, written out directly from the text (no SQL, no Arrow),
so the speed layer (dashboard/live_edge.py) and the test snapshots are checked against an
independent reading of the rules:

- 1m buckets from the first trade's minute to the minute of the coverage end (the later of the last
  trade and the stream's heartbeat); open and close by trade id; taker buy = not is_buyer_maker.
- Points are the trades; ids missing between two consecutive points make the span of their times.
  A minute is complete when a point lies before it, no span touches it, and, when it is closed or
  has no trade, a point lies at or after its end. Closed: its last microsecond is covered.
- A minute without trades is flat at the previous close when complete, without prices when not.
- Larger buckets roll up the 1m ones: prices from the minutes with trades; complete when every minute
  of it so far is present and complete; closed when the last closed minute reaches its end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

MINUTE = timedelta(minutes=1)
MICROSECOND = timedelta(microseconds=1)
SUMMED = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
PRICES = ("open", "high", "low", "close")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Row = dict[str, Any]


def bucket_of(moment: datetime, width: timedelta) -> datetime:
    return moment - (moment - EPOCH) % width


def _spans(trades: list[Mapping[str, Any]]) -> list[tuple[datetime, datetime]]:
    return [
        (before["trade_time"], after["trade_time"])
        for before, after in pairwise(trades)
        if after["trade_id"] - before["trade_id"] > 1
    ]


def _traded(symbol: str, open_time: datetime, trades: list[Mapping[str, Any]]) -> Row:
    taker = [trade for trade in trades if not trade["is_buyer_maker"]]
    return {
        "symbol": symbol,
        "open_time": open_time,
        "close_time": open_time + MINUTE - timedelta(milliseconds=1),
        "open": trades[0]["price"],
        "high": max(trade["price"] for trade in trades),
        "low": min(trade["price"] for trade in trades),
        "close": trades[-1]["price"],
        "volume": sum((trade["quantity"] for trade in trades), Decimal("0E-8")),
        "quote_volume": sum((trade["quote_quantity"] for trade in trades), Decimal("0E-16")),
        "taker_buy_volume": sum((trade["quantity"] for trade in taker), Decimal("0E-8")),
        "taker_buy_quote_volume": sum((trade["quote_quantity"] for trade in taker), Decimal("0E-16")),
        "trade_count": len(trades),
        "first_trade_id": trades[0]["trade_id"],
        "last_trade_id": trades[-1]["trade_id"],
        "last_trade_time": max(trade["trade_time"] for trade in trades),
    }


def _empty(symbol: str, open_time: datetime) -> Row:
    return {
        "symbol": symbol,
        "open_time": open_time,
        "close_time": open_time + MINUTE - timedelta(milliseconds=1),
        **dict.fromkeys(PRICES),
        **{name: Decimal(0) for name in SUMMED},
        "trade_count": 0,
        **dict.fromkeys(("first_trade_id", "last_trade_id", "last_trade_time")),
    }


def minute_candles(symbol: str, trades: Iterable[Mapping[str, Any]], heartbeat: datetime | None) -> list[Row]:
    """The 1m candles of ``trades`` (any order, an id more than once allowed) with the stream's
    heartbeat at ``heartbeat``: every column of the marts but last_loaded_at and built_at."""
    unique = sorted({trade["trade_id"]: trade for trade in trades}.values(), key=lambda trade: trade["trade_id"])
    if not unique:
        return []
    times = [trade["trade_time"] for trade in unique]
    covered = max(times[-1], heartbeat or times[-1])
    spans = _spans(unique)
    by_minute: dict[datetime, list[Mapping[str, Any]]] = {}
    for trade in unique:
        by_minute.setdefault(bucket_of(trade["trade_time"], MINUTE), []).append(trade)
    rows, carried, minute = [], None, bucket_of(times[0], MINUTE)
    while minute <= bucket_of(covered, MINUTE):
        end = minute + MINUTE
        inside = by_minute.get(minute, [])
        row = _traded(symbol, minute, inside) if inside else _empty(symbol, minute)
        closed = end - MICROSECOND <= covered
        before = any(time < minute for time in times)
        untouched = not any(start < end and stop >= minute for start, stop in spans)
        after = any(time >= end for time in times)
        complete = before and untouched and (after or (bool(inside) and not closed))
        if not inside and complete:
            row |= dict.fromkeys(PRICES, carried)
        carried = row["close"] if inside else carried
        rows.append(row | {"is_closed": closed, "is_complete": complete})
        minute = end
    return rows


def roll_up(minutes: list[Row], width: timedelta) -> list[Row]:
    """Buckets of ``width`` from 1m rows (oldest first, continuous), as the marts roll them up."""
    buckets: dict[datetime, list[Row]] = {}
    for row in minutes:
        buckets.setdefault(bucket_of(row["open_time"], width), []).append(row)
    last_minute = minutes[-1]["open_time"]
    closed_until = max((row["open_time"] + MINUTE for row in minutes if row["is_closed"]), default=EPOCH)
    rolled, carried = [], None
    for open_time, rows in sorted(buckets.items()):
        traded = [row for row in rows if row["trade_count"]]
        so_far = min(width, last_minute + MINUTE - open_time) // MINUTE
        complete = len(rows) == so_far and all(row["is_complete"] for row in rows)
        flat = carried if complete else None
        bucket = {
            "symbol": rows[0]["symbol"],
            "open_time": open_time,
            "close_time": open_time + width - timedelta(milliseconds=1),
            "open": traded[0]["open"] if traded else flat,
            "high": max(row["high"] for row in traded) if traded else flat,
            "low": min(row["low"] for row in traded) if traded else flat,
            "close": traded[-1]["close"] if traded else flat,
            **{name: sum((row[name] for row in rows), Decimal(0)) for name in SUMMED},
            "trade_count": sum(row["trade_count"] for row in rows),
            "first_trade_id": traded[0]["first_trade_id"] if traded else None,
            "last_trade_id": traded[-1]["last_trade_id"] if traded else None,
            "last_trade_time": traded[-1]["last_trade_time"] if traded else None,
            "is_closed": open_time + width <= closed_until,
            "is_complete": complete,
            **{name: rows[-1][name] for name in ("last_loaded_at", "built_at") if name in rows[-1]},
        }
        carried = bucket["close"] if traded else carried
        rolled.append(bucket)
    return rolled
