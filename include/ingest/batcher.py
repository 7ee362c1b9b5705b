"""Micro-batches: frames in, Parquet objects and quarantine records out.

``add`` is the hot path and does as little as it can: decode the frame and keep it. ``take`` swaps
the buffers out (cheap, on the event loop), and ``write`` does the heavy part off the loop:
validate the batch, drop ids already written, see the gaps (include/ingest/gaps.py), write one
Parquet object holding every symbol (a batch: include/lake/trades.py), write the rejects to
quarantine, and update the writer's heartbeat. The lake's objects per flush follow the flush, not
the number of symbols. A gap is recorded in the lake in the same flush as the trades after it,
before them.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from include.ingest.gaps import Gap, GapDetector, StartBoundary
from include.ingest.parse import Control, Rejected, decode, decode_many, looks_like_trade, validate
from include.lake.heartbeats import MAX_RECENT_RECONNECTS, RECONNECT_WINDOW, write_heartbeat
from include.lake.keys import GAP_WRITES_PREFIX, WRITES_PREFIX, quarantine_key
from include.lake.markers import MarkerWriter
from include.lake.store import LakeError, ObjectStore
from include.lake.trades import TradeColumns, batch_object
from include.timeutil import from_us, now_us

log = logging.getLogger(__name__)

_RECONNECT_WINDOW_US = int(RECONNECT_WINDOW.total_seconds()) * 1_000_000
RECENT_IDS_KEPT = 200_000  # per symbol: enough to catch every duplicate of a connection handover
_NO_IDS = np.empty(0, dtype=np.int64)
_SAMPLE_FRAME = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1764000000000001,"s":"BTCUSDT","t":1,'
    b'"p":"1.00000000","q":"1.00000000","T":1764000000000000,"m":true,"M":true}}'
)


@dataclass
class Batch:
    raws: list[bytes]
    taken_us: int
    # (position in raws, symbols whose connection was opened again there): where a reconnect fell
    cuts: list[tuple[int, frozenset[str]]] = field(default_factory=list)

    def segments(self) -> Iterator[tuple[list[bytes], frozenset[str]]]:
        """The raws between reconnects, each with the symbols whose connection re-opened at its start."""
        start, reopened = 0, frozenset[str]()
        for position, symbols in self.cuts:
            yield self.raws[start:position], reopened
            start, reopened = position, symbols
        yield (self.raws[start:] if start else self.raws), reopened


@dataclass
class Prepared:
    objects: list[tuple[str, bytes]]
    trades_written: int
    duplicates: int
    quarantined: int
    seconds: float
    gaps: list[Gap] = field(default_factory=list)
    parts: list[TradeColumns] = field(default_factory=list)  # each symbol's new trades, for the batch


@dataclass
class FlushResult:
    keys: list[str]
    trades_written: int
    duplicates: int
    quarantined: int
    seconds: float
    gaps: list[Gap] = field(default_factory=list)


@dataclass
class SymbolStatus:
    last_trade_id: int | None = None
    last_trade_time_us: int | None = None
    trades_written: int = 0
    gaps: int = 0  # gaps recorded
    gap_ids: int = 0  # ids missing in them


@dataclass
class StreamStats:
    received: int = 0
    written: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    reconnects: int = 0  # connections opened after each one's first, handovers included
    gaps: int = 0  # gap records written (include/ingest/gaps.py)
    gap_ids: int = 0  # ids missing in them
    flush_seconds: list[float] = field(default_factory=list)
    # When connections were opened again after one was lost (µs), the last RECONNECT_WINDOW's: the
    # heartbeat reports them, for the reconnect-storm alert.
    reconnect_times: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_RECENT_RECONNECTS))

    def reconnected_at(self, time_us: int) -> None:
        self.reconnect_times.append(time_us)
        self.forget_reconnects(time_us)

    def forget_reconnects(self, now_us: int) -> None:
        """Drop the reconnects older than RECONNECT_WINDOW before ``now_us``."""
        while self.reconnect_times and self.reconnect_times[0] < now_us - _RECONNECT_WINDOW_US:
            self.reconnect_times.popleft()

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "written": self.written,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "quarantine_reasons": dict(self.quarantine_reasons),
            "batches": self.batches,
            "reconnects": self.reconnects,
            "gaps": self.gaps,
            "gap_ids": self.gap_ids,
            "recent_reconnects": [from_us(moment).isoformat() for moment in self.reconnect_times],
        }


class _Announcer:
    """One of a writer's markers (include/lake/markers.py), announcing the keys it wrote.

    Reading the predecessor's marker needs the lake: while it cannot be read (an S3 outage; the
    objects themselves are spooled), the keys wait and are announced with the next write.
    """

    def __init__(self, lake: ObjectStore, writer: str, prefix: str) -> None:
        self.lake, self.writer, self.prefix = lake, writer, prefix
        self.marker: MarkerWriter | None = None  # read from the lake at the first write, not here
        self._unmarked: list[str] = []

    def announce(self, keys: list[str]) -> None:
        self._unmarked += keys
        if self.marker is None:
            try:
                self.marker = MarkerWriter(self.lake, self.writer, self.prefix)
            except LakeError as error:
                log.warning("marker %s%s not readable yet, announcing later: %s", self.prefix, self.writer, error)
                return
        self.marker.mark(self._unmarked)
        self._unmarked = []


class MicroBatcher:
    def __init__(
        self,
        lake: ObjectStore,
        symbols: frozenset[str],
        writer: str,
        source: str = "stream",
        start_boundary: StartBoundary | None = None,
    ) -> None:
        """``writer`` is this writer's own identity (include/ingest/writer.py): it names its markers,
        its quarantine files and its gap records, so no two writers share any of them.
        ``start_boundary`` says where a symbol's history starts when the lake has nothing before the
        first trade (include/repair/boundary.py); without it no start gap is recorded."""
        self.lake = lake
        self.symbols = symbols
        self.source = source
        self.writer = writer
        self.writes = _Announcer(lake, writer, WRITES_PREFIX)
        self.gap_writes = _Announcer(lake, writer, GAP_WRITES_PREFIX)
        self.gaps = GapDetector(lake, start_boundary)
        self._cuts: list[tuple[int, frozenset[str]]] = []
        self.stats = StreamStats()
        self.status: dict[str, SymbolStatus] = {symbol: SymbolStatus() for symbol in symbols}
        # Each symbol shows the state of the connection that carries it.
        self.connection_states: dict[str, dict[str, object]] = {symbol: {"state": "starting"} for symbol in symbols}
        self._recent: dict[str, np.ndarray] = {}
        self.frames: list[bytes] = []  # the receive loops append here directly
        # The first use of pyarrow's compute functions compiles them (about half a second): pay
        # that now, not in the first flush.
        validate(decode_many([_SAMPLE_FRAME]).trades, [_SAMPLE_FRAME], frozenset({"BTCUSDT"}))

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, frame: bytes) -> Control | None:
        """Keep one frame for the next batch.

        The receive loop appends trade frames to ``frames`` itself and calls ``add_other`` for the
        rest; ``add`` is both in one, for callers that are not a hot loop.
        """
        if looks_like_trade(frame):
            self.frames.append(frame)
            return None
        return self.add_other(frame)

    def add_other(self, frame: bytes) -> Control | None:
        """A frame that is not combined-stream data: a control message is handed back to the
        connection (``serverShutdown`` starts a handover); anything else is kept, to be quarantined
        with the batch."""
        message = decode(frame)
        if type(message) is Control:
            return message
        self.frames.append(frame)
        return None

    def reconnected(self, symbols: Iterable[str]) -> None:
        """A connection of ``symbols`` was opened again: frames from here on came after the reconnect.

        Called on the event loop before the new connection's first frame, so the position in
        ``frames`` is exactly where the reconnect fell."""
        self._cuts.append((len(self.frames), frozenset(symbols)))

    def take(self) -> Batch:
        # Copy and clear, never replace: the receive loops hold ``frames.append``.
        batch = Batch(self.frames[:], now_us(), self._cuts)
        self.frames.clear()
        self._cuts = []
        self.stats.received += len(batch.raws)
        return batch

    def _new_only(self, columns: TradeColumns) -> tuple[TradeColumns, int]:
        """Drop ids seen twice in the batch or already written (overlapping connections).

        ``_recent`` holds the last ids written per symbol, sorted. A stream delivers ids in
        increasing order, so the usual batch is checked in one pass: increasing and all above
        what was written. Only a batch that is not (a handover overlap, a replay) pays for sorting.
        """
        ids = columns.trade_id
        recent = self._recent.get(columns.symbol)
        above = recent is None or not len(recent) or ids[0] > recent[-1]
        if above and (len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1]))):
            fresh = columns
            merged = ids if recent is None else np.concatenate([recent[-RECENT_IDS_KEPT:], ids])
        else:
            unique, first = np.unique(ids, return_index=True)
            keep = first if recent is None else first[~np.isin(unique, recent, assume_unique=True)]
            fresh = columns.take(np.sort(keep))
            merged = np.union1d(fresh.trade_id, _NO_IDS if recent is None else recent)  # sorted
        self._recent[columns.symbol] = merged[-RECENT_IDS_KEPT:]
        return fresh, len(columns) - len(fresh)

    def write(self, batch: Batch) -> FlushResult:
        """Encode and store a batch in one go (``prepare`` then ``store``)."""
        return self.store(self.prepare(batch))

    def prepare(self, batch: Batch) -> Prepared:
        """The CPU half of a flush: decode, validate, drop known ids, see gaps, encode Parquet and quarantine."""
        started = time.perf_counter()
        ingested_at = now_us()
        prepared = Prepared([], 0, 0, 0, 0.0)
        rejected: list[Rejected] = []
        for raws, reopened in batch.segments():
            self.gaps.reconnected(reopened)
            decoded = decode_many(raws)
            validated = validate(decoded.trades, decoded.raws, self.symbols)
            rejected += decoded.rejected + validated.rejected
            for columns in validated.by_symbol.values():
                self._prepare_symbol(columns, prepared, ingested_at)
        if (trades := batch_object(prepared.parts, self.source, ingested_at, self.writer, batch.taken_us)) is not None:
            prepared.objects.append(trades)
        if rejected:
            prepared.objects.append(self._quarantine(rejected, batch.taken_us))
            self.stats.quarantine_reasons.update(_reason_kind(r.reason) for r in rejected)
        prepared.quarantined = len(rejected)
        self.stats.written += prepared.trades_written
        self.stats.duplicates += prepared.duplicates
        self.stats.quarantined += len(rejected)
        self.stats.batches += 1
        prepared.seconds = time.perf_counter() - started
        return prepared

    def _prepare_symbol(self, columns: TradeColumns, prepared: Prepared, ingested_at: int) -> None:
        fresh, dropped = self._new_only(columns)
        prepared.duplicates += dropped
        if not len(fresh):
            return
        prepared.gaps += self.gaps.observe(fresh.symbol, fresh.trade_id, fresh.trade_time_us, ingested_at)
        prepared.parts.append(fresh)
        prepared.trades_written += len(fresh)
        status = self.status[fresh.symbol]
        status.last_trade_id = max(status.last_trade_id or 0, int(fresh.trade_id.max()))
        status.last_trade_time_us = max(status.last_trade_time_us or 0, int(fresh.trade_time_us.max()))
        status.trades_written += len(fresh)

    def store(self, prepared: Prepared) -> FlushResult:
        """The I/O half of a flush: the gap records, the objects, then the markers that announce them.

        Gaps go first: a crash between the two leaves a gap on record whose trades are not written
        (the next writer's restart gap covers them again), never trades whose gap went unrecorded.
        """
        started = time.perf_counter()
        gaps = prepared.gaps + self.gaps.anchor(now_us())
        gap_keys = self._record_gaps(gaps)
        for key, data in prepared.objects:
            self.lake.put(key, data)
        keys = [key for key, _ in prepared.objects]
        if keys:
            self.writes.announce(keys)
        if gap_keys:
            self.gap_writes.announce(gap_keys)
        seconds = prepared.seconds + time.perf_counter() - started
        self.stats.flush_seconds.append(seconds)
        return FlushResult(keys, prepared.trades_written, prepared.duplicates, prepared.quarantined, seconds, gaps)

    def _record_gaps(self, gaps: list[Gap]) -> list[str]:
        keys = []
        for gap in gaps:
            key = gap.key(self.writer)
            self.lake.put(key, gap.to_json(self.writer))
            keys.append(key)
            status = self.status[gap.symbol]
            status.gaps += 1
            status.gap_ids += gap.missing
            self.stats.gaps += 1
            self.stats.gap_ids += gap.missing
            log.info("gap %s %s: ids %d..%d (%d) missing", gap.kind, gap.symbol, gap.first_id, gap.last_id, gap.missing)
        return keys

    def _quarantine(self, rejected: list[Rejected], received_us: int) -> tuple[str, bytes]:
        moment = from_us(received_us)
        key = quarantine_key(self.writer, received_us, len(rejected))
        lines = [
            json.dumps(
                {
                    "received_at": moment.isoformat(),
                    "source": self.source,
                    "reason": item.reason,
                    "raw": item.raw.decode("utf-8", "backslashreplace"),
                }
            )
            for item in rejected
        ]
        return key, ("\n".join(lines) + "\n").encode()

    def write_heartbeats(self) -> None:
        """The writer's heartbeat: one small object with every symbol's status (include/lake/heartbeats.py)."""
        now = now_us()
        symbols = {
            symbol: {
                "last_trade_id": status.last_trade_id,
                "last_trade_time": None
                if status.last_trade_time_us is None
                else from_us(status.last_trade_time_us).isoformat(),
                "lag_seconds": None
                if status.last_trade_time_us is None
                else round((now - status.last_trade_time_us) / 1e6, 3),
                "trades_written": status.trades_written,
                "gaps": status.gaps,
                "gap_ids": status.gap_ids,
                "connection": self.connection_states.get(symbol),
            }
            for symbol, status in self.status.items()
        }
        self.stats.forget_reconnects(now)
        write_heartbeat(self.lake, self.writer, from_us(now), self.stats.as_dict(), symbols)


def _reason_kind(reason: str) -> str:
    """The reason without its details, for counting: 'malformed JSON: ...' -> 'malformed JSON'."""
    return reason.split(":", 1)[0]
