"""Exact gaps: which trade ids of a window are missing, as half-open ranges.

Binance's trade ids are sequential per symbol, so the ids a window should hold are exactly
``[first_id, end_id)``: the first trade at or after its start, up to the first at or after its end.
Whatever of that range the lake does not hold, less the exchange-side holes already on record,
is a gap.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def missing_ranges(
    first_id: int, end_id: int, present: np.ndarray, known_holes: Iterable[int] = ()
) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` runs of ids in ``[first_id, end_id)`` that are not present."""
    if end_id <= first_id:
        return []
    expected = np.arange(first_id, end_id, dtype=np.int64)
    have = np.union1d(np.asarray(present, dtype=np.int64), np.fromiter(known_holes, dtype=np.int64))
    missing = expected[~np.isin(expected, have, assume_unique=True)]
    if not len(missing):
        return []
    breaks = np.flatnonzero(np.diff(missing) != 1)
    starts = np.concatenate([[missing[0]], missing[breaks + 1]])
    stops = np.concatenate([missing[breaks], [missing[-1]]]) + 1
    return [(int(start), int(stop)) for start, stop in zip(starts, stops, strict=True)]


def count(ranges: list[tuple[int, int]]) -> int:
    return sum(stop - start for start, stop in ranges)
