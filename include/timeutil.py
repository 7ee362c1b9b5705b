"""The one time helper: the data contract's unit is the microsecond since the epoch, in UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime

MICROS_PER_SECOND = 1_000_000
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


def hour_start_us(time_us: int) -> int:
    return time_us - time_us % HOUR_US
