"""Gaps in the stream, seen as they happen: the trade ids a writer did not receive.

Binance's trade ids are consecutive per symbol, so a gap is known the moment the trade after it
arrives (docs/architecture.md, "The live edge", part 2). Four kinds:

- ``jump``: ids skipped inside one connection (the next id is not the last written + 1);
- ``reconnect``: the last id written before a connection was opened again against the first after;
- ``restart``: a writer's first trade of a symbol against the last id the lake holds for it in
  that hour or the hour before (a predecessor's, or another writer's), found from the keys of the
  symbol's files and from the stream batches of those hours (read once per writer, for every symbol);
- ``start``: nothing in the lake for those two hours: the first trade against a boundary the
  exchange vouches for (``Boundary``: the end of the last complete repaired window, else the first
  trade at or after the start of the hour). That time is the gap's ``since``: an anchor worth
  recording even when nothing is missing (then ``last_id`` is ``first_id - 1``).

``GapDetector.observe`` is the in-memory half, run on every micro-batch (a sort check and a diff);
``GapDetector.anchor`` is the lake and REST half, run once per symbol, in the flush's I/O thread.
Ids at or below the last id written are never a gap: they are late (a handover's overlap).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from include.binance.client import BinanceError
from include.lake.keys import gap_key, hour_prefix, ids_of_key
from include.lake.store import LakeError, ObjectStore
from include.lake.trades import batch_keys, read_again_if_vanished, read_table
from include.timeutil import HOUR_US, from_us, hour_start_us, to_us

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gap:
    symbol: str
    first_id: int
    last_id: int  # included; first_id - 1 for a start gap's anchor with nothing missing
    kind: str
    next_trade_time_us: int  # exchange time of the first trade after the gap
    detected_at_us: int
    since_us: int | None = None  # a start gap's boundary: the first trade at or after it is first_id

    @property
    def missing(self) -> int:
        return self.last_id - self.first_id + 1

    def key(self, writer: str) -> str:
        return gap_key(self.symbol, from_us(self.detected_at_us), self.first_id, self.last_id, writer)

    def to_json(self, writer: str) -> bytes:
        body = {
            "symbol": self.symbol,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "since": None if self.since_us is None else from_us(self.since_us).isoformat(),
            "kind": self.kind,
            "next_trade_time": from_us(self.next_trade_time_us).isoformat(),
            "detected_at": from_us(self.detected_at_us).isoformat(),
            "writer": writer,
        }
        return json.dumps(body, indent=2).encode()


@dataclass(frozen=True)
class Boundary:
    """The exchange's word on where a stream's history may start: the first trade at or after
    ``since_us`` is ``first_id``."""

    first_id: int
    since_us: int


# (symbol, exchange time of the writer's first trade) -> the boundary before it, or None if unknown
StartBoundary = Callable[[str, int], Boundary | None]


def lake_last_id(
    lake: ObjectStore, symbol: str, before_id: int, time_us: int, batches: dict[str, pa.Table] | None = None
) -> int | None:
    """The last id the lake holds for ``symbol`` below ``before_id``, in the hour of ``time_us`` or the
    hour before; None if it holds none there. A symbol's files are judged by their keys
    (``<source>-<first>-<last>``); the stream batches of those hours are read, their symbol and id
    columns only, once each into ``batches`` (key -> table) when a caller asks for many symbols.
    A batch gone before it is read was split into files written before: all is listed again."""
    return read_again_if_vanished(lambda: _lake_last_id(lake, symbol, before_id, time_us, batches))


def _lake_last_id(
    lake: ObjectStore, symbol: str, before_id: int, time_us: int, batches: dict[str, pa.Table] | None
) -> int | None:
    hour = hour_start_us(time_us)
    last = None
    listed = batch_keys(lake, hour - HOUR_US, hour + HOUR_US)  # first: what the split takes away is then listed
    for prefix in (hour_prefix(symbol, hour - HOUR_US), hour_prefix(symbol, hour)):
        for info in lake.list(prefix):
            ids = ids_of_key(info.key)
            if ids is not None and ids[0] < before_id:
                last = ids[1] if last is None else max(last, ids[1])
    batches = {} if batches is None else batches
    for key in listed:
        if key not in batches:
            batches[key] = read_table(lake.get(key), ["symbol", "trade_id"])
        table = batches[key]
        ids = table.filter(pc.equal(table["symbol"], symbol))["trade_id"].to_numpy()
        below = ids[ids < before_id]
        if len(below):
            last = int(below.max()) if last is None else max(last, int(below.max()))
    return last


@dataclass
class _First:
    """A writer's first trade of a symbol, until the gap before it is known."""

    trade_id: int
    time_us: int


def _in_id_order(ids: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return ids, times
    order = np.argsort(ids, kind="stable")
    return ids[order], times[order]


class GapDetector:
    """One writer's view of what it missed, per symbol."""

    def __init__(self, lake: ObjectStore, start_boundary: StartBoundary | None = None) -> None:
        self.lake = lake
        self.start_boundary = start_boundary  # None: no start gap is recorded (nothing to ask)
        self.last_written: dict[str, int] = {}
        self.unanchored: dict[str, _First] = {}
        self._batches: dict[str, pa.Table] = {}  # stream batches read while anchoring (lake_last_id)
        self._reconnected: set[str] = set()

    def reconnected(self, symbols: Iterable[str]) -> None:
        """The connection of ``symbols`` was opened again: their next gap is the reconnect's."""
        self._reconnected.update(symbols)

    def observe(self, symbol: str, ids: np.ndarray, times: np.ndarray, now_us: int) -> list[Gap]:
        """The gaps before and among ``ids`` (any order, no duplicates), which are about to be written."""
        if not len(ids):
            return []
        ids, times = _in_id_order(ids, times)
        first = self.unanchored.get(symbol)
        if first is not None and ids[0] < first.trade_id:  # late: the anchor moves down
            self.unanchored[symbol] = _First(int(ids[0]), int(times[0]))
        last = self.last_written.get(symbol)
        if last is None:
            self.unanchored[symbol] = _First(int(ids[0]), int(times[0]))
            edges, edge_times = ids, times
        else:
            above = ids > last
            if not above.any():
                return []
            edges = np.concatenate([np.array([last], dtype=np.int64), ids[above]])
            edge_times = np.concatenate([np.array([0], dtype=np.int64), times[above]])
        self.last_written[symbol] = int(edges[-1])
        reconnected = last is not None and symbol in self._reconnected
        self._reconnected.discard(symbol)
        gaps = []
        for index in np.flatnonzero(np.diff(edges) > 1):
            kind = "reconnect" if reconnected and index == 0 else "jump"
            start, stop = int(edges[index]) + 1, int(edges[index + 1]) - 1
            gaps.append(Gap(symbol, start, stop, kind, int(edge_times[index + 1]), now_us))
        return gaps

    def anchor(self, now_us: int) -> list[Gap]:
        """The gaps before each symbol's first trade, against the lake (restart) or a boundary (start).

        A lookup that fails (the lake or the exchange unreachable) is tried again at the next flush;
        the trades themselves are written meanwhile.
        """
        gaps = []
        for symbol, first in list(self.unanchored.items()):
            try:
                gap = self._before_first(symbol, first, now_us)
            except (LakeError, BinanceError, OSError) as error:
                log.warning("the gap before %s's first trade %d is not known yet: %s", symbol, first.trade_id, error)
                break  # the lake or the exchange is away: the next flush asks again
            del self.unanchored[symbol]
            if gap is not None:
                gaps.append(gap)
        if not self.unanchored:
            self._batches.clear()  # every symbol is anchored: no lookup reads them again
        return gaps

    def _before_first(self, symbol: str, first: _First, now_us: int) -> Gap | None:
        last = lake_last_id(self.lake, symbol, first.trade_id, first.time_us, self._batches)
        if last is not None:
            if last + 1 >= first.trade_id:
                return None
            return Gap(symbol, last + 1, first.trade_id - 1, "restart", first.time_us, now_us)
        boundary = None if self.start_boundary is None else self.start_boundary(symbol, first.time_us)
        if boundary is None:
            return None
        last_missing = max(first.trade_id, boundary.first_id) - 1
        return Gap(symbol, boundary.first_id, last_missing, "start", first.time_us, now_us, boundary.since_us)


def gap_from_json(data: bytes) -> tuple[Gap, str]:
    """A gap record as written, and its writer."""
    body = json.loads(data)
    since = body["since"]
    gap = Gap(
        symbol=body["symbol"],
        first_id=int(body["first_id"]),
        last_id=int(body["last_id"]),
        kind=body["kind"],
        next_trade_time_us=_us(body["next_trade_time"]),
        detected_at_us=_us(body["detected_at"]),
        since_us=None if since is None else _us(since),
    )
    return gap, body["writer"]


def _us(text: str) -> int:
    return to_us(datetime.fromisoformat(text))
