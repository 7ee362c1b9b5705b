"""Compaction: a closed hour's trade files of one symbol become one file.

The split (include/lake/split.py), backfills and live fills leave a symbol-hour several files. Once
an hour is complete (the repair verified every id, ``include/repair/compact.py`` decides), its files
are rewritten as one:
``trades/.../hour=13/compact-<first_id>-<last_id>.parquet``, one row per trade id, in id order, each
row as it was first written (its ``source`` and ``ingested_at`` kept).

Every step can crash and be run again:

1. the compacted file is written (one atomic PUT; its key and bytes follow from the rows, so a re-run
   writes the same object);
2. the files it replaces are deleted, each only if it is still the object that was read (same
   ETag): a file rewritten meanwhile stays, for the next compaction to fold in.

Between 1 and 2 the hour holds both, and every reader keeps one row per id (repair, the live fill, the
speed layer, staging). A file that lands in a compacted hour later (a backfill repeating ids) is
folded in by the next compaction of that hour.

The compacted file is not announced in a write marker of its own: one marker per symbol-hour would
pile up under ``status/writes/``, which every watcher poll lists. Every file it replaces was announced
by its writer, so a load that has not read one yet lists the partition (its writer's marker names it)
and finds the compacted file instead; a file never announced (its writer crashed first) is the
nightly reconcile's, before and after compaction alike. The load inserts a compacted file's rows
only for ids ``raw.trades`` does not hold (``is_compacted``), so it may see it any number of times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from include.lake.keys import COMPACT_SOURCE, hour_prefix, ids_of_key, is_compacted, trade_key
from include.lake.store import ObjectInfo, ObjectStore
from include.lake.trades import parquet_bytes, read_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectedIds:
    """The ids an hour must hold, as the repair verified them: ``[first_id, end_id)`` but the holes."""

    first_id: int
    end_id: int
    holes: frozenset[int] = frozenset()

    def differs_from(self, ids: np.ndarray) -> str | None:
        """Why sorted unique ``ids`` are not exactly the expected ones; None when they are."""
        expected = np.setdiff1d(np.arange(self.first_id, self.end_id, dtype=np.int64), list(self.holes))
        if np.array_equal(ids, expected):
            return None
        missing = np.setdiff1d(expected, ids)
        extra = np.setdiff1d(ids, expected)
        return f"the lake holds {len(ids)} ids, {len(missing)} expected ones missing, {len(extra)} unexpected"


class NotVerified(RuntimeError):
    """The hour's files do not hold exactly the ids the repair verified: it is not compacted."""


@dataclass
class Compaction:
    symbol: str
    hour_start_us: int
    files_before: int
    trades: int
    compacted_key: str | None  # None: nothing to compact (no file, or one compacted file already)
    deleted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.compacted_key is None:
            return f"{self.symbol} hour {self.hour_start_us}: {self.files_before} file(s), nothing to compact"
        return (
            f"{self.symbol} hour {self.hour_start_us}: {self.files_before} files -> 1 "
            f"({self.trades} trades, {len(self.deleted)} deleted): {self.compacted_key}"
        )


def trade_files(lake: ObjectStore, symbol: str, hour_start_us: int) -> list[ObjectInfo]:
    """The trade files of one symbol-hour partition."""
    return [info for info in lake.list(hour_prefix(symbol, hour_start_us)) if ids_of_key(info.key) is not None]


def one_row_per_id(table: pa.Table) -> pa.Table:
    """One row per trade id, in id order: of the rows of one id, the first written (then by source)."""
    order = pc.sort_indices(
        table, sort_keys=[("trade_id", "ascending"), ("ingested_at", "ascending"), ("source", "ascending")]
    )
    ordered = table.take(order)
    ids = ordered["trade_id"].to_numpy()
    first_of_id = np.ones(len(ids), dtype=bool)
    first_of_id[1:] = ids[1:] != ids[:-1]
    return ordered.filter(pa.array(first_of_id))


def compact_hour(lake: ObjectStore, symbol: str, hour_start_us: int, expected: ExpectedIds) -> Compaction:
    """Rewrite one symbol-hour's trade files as one; idempotent, and safe to re-run after a crash.

    Raises ``NotVerified`` (and changes nothing) unless the files hold exactly the ``expected`` ids."""
    files = trade_files(lake, symbol, hour_start_us)
    if not files or (len(files) == 1 and is_compacted(files[0].key)):
        return Compaction(symbol, hour_start_us, len(files), 0, None)
    table = one_row_per_id(pa.concat_tables([read_table(lake.get(info.key)) for info in files]))
    ids = table["trade_id"].to_numpy()
    if (why := expected.differs_from(ids)) is not None:
        raise NotVerified(f"{symbol} hour {hour_start_us}: not compacted, {why}")
    key = trade_key(symbol, hour_start_us, COMPACT_SOURCE, int(ids[0]), int(ids[-1]))
    lake.put(key, parquet_bytes(table))
    result = Compaction(symbol, hour_start_us, len(files), len(table), key)
    read = {(info.key, info.etag) for info in files}
    for info in trade_files(lake, symbol, hour_start_us):
        if info.key != key and (info.key, info.etag) in read:
            lake.delete(info.key)
            result.deleted.append(info.key)
    log.info("compacted %s", result.summary())
    return result
