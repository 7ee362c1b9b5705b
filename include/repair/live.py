"""The live fill: the gaps the stream recorded, fetched from REST seconds after they were seen.

The stream writes each gap it sees under ``status/gaps/`` and names it in its gap marker
(``status/gap_writes/<writer>.json``; include/ingest/gaps.py). A gap is *pending* until a fill
record at ``status/gap_fills/.../<first_id>-<last_id>.json`` says nothing of it is missing. For
each pending gap ``fill_gap``:

1. looks in the lake first: the ids of the gap already there (a late frame, another writer, an
   earlier fill) are not fetched again. Only the hour partitions the gap can lie in are listed,
   from the hour of the trade after it back to the hour of a trade before it, and only the files
   whose key's ids overlap the gap are read;
2. fetches exactly the rest from ``historicalTrades`` (``fetch_ranges`` of include/repair/repair.py,
   within the client's weight budget), in chunks, so a long outage's gap pages through in bounded
   memory, each chunk written as backfill files and announced in this fill's write marker (the
   warehouse loads them like any micro-batch);
3. writes the fill record: filled, exchange-side holes (REST answered a later id in their place:
   recorded, never asked for again), what is still missing (REST lagging behind the stream, or rows
   the trade contract refuses). A gap still missing ids stays pending for the next run; a complete
   one is never looked at again, so a second run writes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np

from include.binance.client import BinanceClient
from include.ingest.gaps import Gap, gap_from_json
from include.lake.keys import (
    GAP_WRITES_PREFIX,
    gap_fill_key,
    gap_fill_symbol_prefix,
    gap_ids_of_key,
    hour_prefix,
    ids_of_key,
    partition_values,
)
from include.lake.markers import PARTITION_MEMORY, MarkerWriter, read_marker
from include.lake.store import ObjectStore
from include.lake.trades import batch_keys, read_again_if_vanished, read_symbol_rows, read_table, write_trades
from include.repair.gaps import count, missing_ranges
from include.repair.repair import fetch_ranges
from include.timeutil import HOUR_US, from_us, hour_start_us, now_us

log = logging.getLogger(__name__)

FILL_CHUNK_IDS = 50_000  # ids fetched and written per step: a long outage's gap in bounded memory
LOOKBACK_HOURS = 48  # the furthest back a gap's ids are looked for in the lake


class FillIncomplete(RuntimeError):
    """Gaps still miss ids after a fill (REST lagging, or rows the contract refuses): try again later."""


@dataclass
class GapFill:
    """The live fill's record of one gap (``keys.gap_fill_key``); the warehouse loads it as is."""

    symbol: str
    first_id: int
    last_id: int
    since: str | None  # a start gap's boundary (ISO): the first trade at or after it is first_id
    filled: int  # ids written by the fills of this gap, over all runs
    holes: list[int] = field(default_factory=list)  # exchange-side: REST does not have them
    missing: int = 0  # still missing (0: complete)
    files: list[str] = field(default_factory=list)  # backfill files written, over all runs
    refused: list[dict[str, object]] = field(default_factory=list)  # REST rows the contract refuses
    checked_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()


@dataclass(frozen=True)
class PendingGap:
    gap: Gap  # as its first writer recorded it (two writers may record the same gap)
    fill_key: str
    previous: GapFill | None  # an earlier fill that left ids missing


@dataclass
class FillSummary:
    gaps: int = 0
    filled: int = 0
    holes: int = 0
    missing: int = 0  # ids still missing over all gaps
    incomplete: int = 0  # gaps still pending
    files: list[str] = field(default_factory=list)

    def add(self, record: GapFill, new_files: list[str], new_filled: int) -> None:
        self.gaps += 1
        self.filled += new_filled
        self.holes += len(record.holes)
        self.missing += record.missing
        self.incomplete += record.missing > 0
        self.files += new_files

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "files": len(self.files)}


def gap_partitions(lake: ObjectStore, now: datetime | None = None) -> list[str]:
    """The ``status/gaps/.../date=.../`` partitions written in the last two days, as the gap markers
    name them: the listing follows what the stream recorded, not the size of the lake."""
    horizon = (now or datetime.now(UTC)) - PARTITION_MEMORY
    partitions: set[str] = set()
    for info in lake.list(GAP_WRITES_PREFIX):
        marker = read_marker(lake, info.key)
        if marker is not None:
            partitions.update(p for p, at in marker.partitions.items() if datetime.fromisoformat(at) >= horizon)
    return sorted(partitions)


def prune_gap_markers(lake: ObjectStore, now: datetime | None = None) -> list[str]:
    """Delete gap markers whose writer recorded nothing for two days: they name no partition the fill
    still reads, and the watcher's folder stays small. A writer that records again writes a new one."""
    horizon = (now or datetime.now(UTC)) - PARTITION_MEMORY
    deleted = []
    for info in lake.list(GAP_WRITES_PREFIX):
        marker = read_marker(lake, info.key)
        if marker is not None and datetime.fromisoformat(marker.at) < horizon:
            lake.delete(info.key)
            deleted.append(info.key)
    return deleted


def read_fill(lake: ObjectStore, key: str) -> GapFill:
    return GapFill(**json.loads(lake.get(key)))


def _pending_in(lake: ObjectStore, partition: str) -> Iterator[PendingGap]:
    """The gaps of one symbol and date without a complete fill record."""
    values = partition_values(partition)
    symbol, day = values["symbol"], datetime.strptime(values["date"], "%Y-%m-%d")
    fills = {info.key for info in lake.list(f"{gap_fill_symbol_prefix(symbol)}date={values['date']}/")}
    seen: set[str] = set()
    for info in lake.list(partition):
        if not info.key.endswith(".json"):
            continue
        fill_key = gap_fill_key(symbol, day, *gap_ids_of_key(info.key))
        if fill_key in seen:
            continue  # the same gap recorded by another writer (overlapping stream windows)
        seen.add(fill_key)
        previous = read_fill(lake, fill_key) if fill_key in fills else None
        if previous is None or previous.missing > 0:
            gap, _ = gap_from_json(lake.get(info.key))
            yield PendingGap(gap, fill_key, previous)


def pending_gaps(lake: ObjectStore, symbols: Collection[str] | None = None) -> list[PendingGap]:
    """Every gap of the last two days (of ``symbols``, or all) that no fill has completed, oldest first."""
    pending = []
    for partition in gap_partitions(lake):
        if symbols is None or partition_values(partition)["symbol"] in symbols:
            pending += _pending_in(lake, partition)
    return sorted(pending, key=lambda p: (p.gap.symbol, p.gap.first_id, p.gap.last_id))


def lake_ids_between(lake: ObjectStore, gap: Gap) -> np.ndarray:
    """The ids of ``gap`` the lake holds already, sorted.

    Trade ids rise with trade time, so the gap's ids lie at or before the trade after it: the hour
    partitions are listed from that trade's hour back to the first hour holding a trade before the
    gap (or the start gap's ``since``), and only files whose key's ids overlap the gap are read; and
    the stream batches of that time not split yet, the symbol's rows only, listed first. A file gone
    before it is read was compacted or split into files written before: all is listed again.
    """
    return read_again_if_vanished(lambda: _lake_ids_between(lake, gap))


def _lake_ids_between(lake: ObjectStore, gap: Gap) -> np.ndarray:
    hour = hour_start_us(gap.next_trade_time_us)
    floor = hour - LOOKBACK_HOURS * HOUR_US if gap.since_us is None else hour_start_us(gap.since_us)
    batches = batch_keys(lake, floor, gap.next_trade_time_us + 1)  # the stream batches not split yet
    found: list[np.ndarray] = []
    reached_before = False
    while hour >= floor and not reached_before:
        for info in lake.list(hour_prefix(gap.symbol, hour)):
            if (ids := ids_of_key(info.key)) is None:
                continue  # not a trade file
            first_id, last_id = ids
            reached_before |= first_id < gap.first_id
            if first_id <= gap.last_id and last_id >= gap.first_id:
                ids = read_table(lake.get(info.key), ["trade_id"])["trade_id"].to_numpy()
                found.append(ids[(ids >= gap.first_id) & (ids <= gap.last_id)])
        hour -= HOUR_US
    for key in batches:
        ids = read_symbol_rows(lake, key, gap.symbol, ["trade_id"])["trade_id"].to_numpy()
        found.append(ids[(ids >= gap.first_id) & (ids <= gap.last_id)])
    return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)


def chunks(ranges: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    """Half-open id ranges in groups of at most ``size`` ids, in order, long ranges cut."""
    group: list[tuple[int, int]] = []
    room = size
    for start, stop in ranges:
        while start < stop:
            piece = min(stop, start + room)
            group.append((start, piece))
            room -= piece - start
            start = piece
            if room == 0:
                yield group
                group, room = [], size
    if group:
        yield group


def fill_gap(client: BinanceClient, lake: ObjectStore, pending: PendingGap, marker: MarkerWriter) -> GapFill:
    """Fetch the ids of one gap that the lake does not hold, write them, and record the fill."""
    gap, previous = pending.gap, pending.previous
    end_id = gap.last_id + 1
    holes = set(previous.holes) if previous else set()
    present = lake_ids_between(lake, gap)
    files: list[str] = []
    filled = 0
    refused: list[dict[str, object]] = []
    for chunk in chunks(missing_ranges(gap.first_id, end_id, present, holes), FILL_CHUNK_IDS):
        fetched = fetch_ranges(client, gap.symbol, chunk)
        holes.update(fetched.holes)
        refused += fetched.refused
        if len(fetched.columns):
            keys = write_trades(lake, fetched.columns, "backfill", now_us())
            marker.mark(keys)
            files += keys
            filled += len(fetched.columns)
            present = np.union1d(present, fetched.columns.trade_id)
    still = missing_ranges(gap.first_id, end_id, present, holes)
    record = GapFill(
        symbol=gap.symbol,
        first_id=gap.first_id,
        last_id=gap.last_id,
        since=None if gap.since_us is None else from_us(gap.since_us).isoformat(),
        filled=(previous.filled if previous else 0) + filled,
        holes=sorted(holes),
        missing=count(still),
        files=(previous.files if previous else []) + files,
        refused=refused,
        checked_at=datetime.now(UTC).isoformat(),
    )
    lake.put(pending.fill_key, record.to_json())
    log.info(
        "gap %s %s %d..%d: filled %d, holes %d, still missing %d",
        gap.kind,
        gap.symbol,
        gap.first_id,
        gap.last_id,
        filled,
        len(record.holes),
        record.missing,
    )
    return record


def fill_pending(
    client: BinanceClient, lake: ObjectStore, writer: str, symbols: Collection[str] | None = None
) -> FillSummary:
    """Fill every pending gap (of ``symbols``, or all); ``writer`` names this fill's write marker."""
    summary = FillSummary()
    marker: MarkerWriter | None = None
    for pending in pending_gaps(lake, symbols):
        marker = marker or MarkerWriter(lake, writer)
        before_files = len(pending.previous.files) if pending.previous else 0
        before_filled = pending.previous.filled if pending.previous else 0
        record = fill_gap(client, lake, pending, marker)
        summary.add(record, record.files[before_files:], record.filled - before_filled)
    prune_gap_markers(lake)
    return summary
