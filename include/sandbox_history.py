"""Where the history of ``make up``'s sandbox begins, kept in the data folder across restarts.

The synthetic market is a pure function of (seed, symbol, rate, time), so a restarted sandbox
continues the same market; but it serves only the history it makes when it starts. The lake and the
repair DAG know about windows from the first start on (the hour the stream started in), and a
window that begins before the sandbox's first trade cannot be repaired. So the first start records
when the history it serves begins, and every later start serves history from then.

The first start serves from the start of the previous hour (one to two hours back): the first
``repair_gaps`` run, for the last closed hour, runs as soon as the DAG is unpaused, and a window the
exchange's history covers only in part could never be told complete (its candles would stay shaded
for good, as for a symbol listed mid-hour).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from include.timeutil import HOUR_US, MICROS_PER_SECOND, from_us, hour_start_us, to_us

# Under DATA_DIR: one line, the ISO time the first start's history began.
MARKER = Path("sandbox") / "history_start"
FIRST_HISTORY_US = HOUR_US  # every start serves at least the last hour
# Every trade of the history is made when the sandbox starts and kept in memory: a day at `up`'s
# default 20 trades/s per symbol took 36 s to make and ~200 MB for two symbols on one core here.
# So a restart serves at most a day, and at most that many trades per symbol: less than a day at a
# higher rate, where a day would hold up the start for minutes (but never less than the hour).
MOST_HISTORY_TRADES = 24 * 3600 * 20
MOST_HISTORY_US = 24 * HOUR_US


class HistoryMarkerError(ValueError):
    """The marker holds something that is not a time: named, with what to do about it."""


def recorded_history_start(data_dir: Path, now_us: int) -> int:
    """When the history of the first start began: read from ``data_dir``, or, on the first start
    (no marker yet), the start of the hour before ``now_us``'s, and recorded there."""
    marker = data_dir / MARKER
    try:
        text = marker.read_text().strip()
    except FileNotFoundError:
        start_us = hour_start_us(now_us) - HOUR_US
        marker.parent.mkdir(parents=True, exist_ok=True)
        temporary = marker.with_name(f".{marker.name}.{os.getpid()}")
        temporary.write_text(from_us(start_us).isoformat() + "\n")
        os.replace(temporary, marker)  # whole or absent: a start cut short never leaves half a time
        return start_us
    try:
        return to_us(datetime.fromisoformat(text))
    except ValueError:  # not ISO, or no zone
        raise HistoryMarkerError(
            f"{marker} holds {text!r}, not an ISO time with a zone: remove it to serve history from this start on"
        ) from None


def served_history_start(first_start_us: int, now_us: int, rate: float) -> int:
    """Where this start's history begins: at the first start's, but no further back than the
    bound above allows at ``rate`` trades/s, and never less than ``FIRST_HISTORY_US`` back."""
    longest_us = max(FIRST_HISTORY_US, min(MOST_HISTORY_US, int(MOST_HISTORY_TRADES / rate * MICROS_PER_SECOND)))
    return min(max(first_start_us, now_us - longest_us), now_us - FIRST_HISTORY_US)


def history_start(data_dir: Path, now_us: int, rate: float) -> int:
    """Where the history of a sandbox starting at ``now_us`` on ``data_dir`` begins."""
    return served_history_start(recorded_history_start(data_dir, now_us), now_us, rate)
