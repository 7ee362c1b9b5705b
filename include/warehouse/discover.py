"""Which lake files a load has to look at: the partitions the write markers name, not the whole lake.

A load reads the write markers that changed since the previous load (the cursor, kept in the
warehouse), and lists only the partitions they name: the cost of a load follows what was written
since the last one, not the size of the lake. The very first load, and a reconcile, list the whole
lake: a writer that crashed between writing a file and writing its marker left a file that no
marker names, and a reconcile is what picks it up (the warehouse DAG runs one every night).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from include.lake.keys import TRADES_PREFIX, WRITES_PREFIX
from include.lake.markers import read_marker
from include.lake.store import ObjectInfo, ObjectStore

# A reconcile deletes markers whose writer has been silent this long and that were consumed.
STALE_MARKER_AGE = timedelta(days=7)


@dataclass
class Discovery:
    files: list[ObjectInfo]
    cursor: dict[str, str]  # every marker key -> the ETag this discovery consumed
    partitions: list[str] | None  # None: the whole lake was listed


def _trade_files(lake: ObjectStore, prefix: str) -> list[ObjectInfo]:
    return [info for info in lake.list(prefix) if info.key.endswith(".parquet")]


def discover(lake: ObjectStore, cursor: dict[str, str] | None, full: bool = False) -> Discovery:
    """The lake files written since the load that saved ``cursor`` (or all files, on a full listing)."""
    # Markers are listed before any partition: a file written after this listing is announced by a
    # marker ETag the cursor does not hold yet, so the next load sees it.
    markers = {info.key: info.etag for info in lake.list(WRITES_PREFIX) if info.key.endswith(".json")}
    if full or cursor is None:
        return Discovery(_trade_files(lake, TRADES_PREFIX), markers, None)
    partitions: set[str] = set()
    for key, etag in markers.items():
        if cursor.get(key) == etag:
            continue
        marker = read_marker(lake, key)
        if marker is not None:  # deleted since the listing: its files are in the next reconcile
            partitions.update(p for p in marker.partitions if p.startswith(TRADES_PREFIX))
    ordered = sorted(partitions)
    return Discovery([info for p in ordered for info in _trade_files(lake, p)], markers, ordered)


def prune_stale_markers(lake: ObjectStore, consumed: dict[str, str], now: datetime | None = None) -> list[str]:
    """Delete consumed markers of writers silent for a week (repair windows leave one each)."""
    horizon = (now or datetime.now(UTC)) - STALE_MARKER_AGE
    deleted = []
    for info in lake.list(WRITES_PREFIX):
        if consumed.get(info.key) != info.etag:
            continue
        marker = read_marker(lake, info.key)
        if marker is not None and datetime.fromisoformat(marker.at) < horizon:
            lake.delete(info.key)
            deleted.append(info.key)
    return deleted
