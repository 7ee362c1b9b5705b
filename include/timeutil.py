"""The one time helper: the data contract's unit is the microsecond since the epoch, in UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime

MICROS_PER_SECOND = 1_000_000
MINUTE_US = 60 * MICROS_PER_SECOND
HOUR_US = 3600 * MICROS_PER_SECOND


def now_us() -> int:
    """The wall clock in microseconds."""
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    """An aware datetime in microseconds; exact (no float on the way)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def from_us(time_us: int) -> datetime:
    """Microseconds as an aware UTC datetime; exact."""
    seconds, micros = divmod(time_us, MICROS_PER_SECOND)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


def us_from_ms_or_us(epoch_time: int) -> int:
    """A Binance time in ms or µs as µs: the magnitude tells. Milliseconds since 1970 stay below 1e14
    until the year 5138; microseconds have been above 1e15 since 2001 (Binance's dumps switched from
    ms to µs in 2025, and serverTime may come in ms despite X-MBX-TIME-UNIT)."""
    return epoch_time if epoch_time >= 10**14 else epoch_time * 1000


def hour_start_us(time_us: int) -> int:
    return time_us - time_us % HOUR_US
