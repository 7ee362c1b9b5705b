"""The hourly split: a closed hour's stream batches become one file per symbol-hour.

The stream writes one object per flush holding every symbol of its shard (a batch,
include/lake/trades.py), so the lake's PUTs follow the flushes, not the number of symbols. Once an
hour has closed, its batches (the partition of their first trade's hour) are split into
``trades/.../symbol=S/date=D/hour=H/split-<first_id>-<last_id>.parquet``, one per symbol and hour of
trade time, one row per trade id (the first written). From there the repair and the compaction work
per symbol-hour as they always did.

Every step can crash and be run again:

1. each symbol-hour's file is written, holding only the ids its partition does not hold yet (one
   atomic PUT; key and bytes follow from those rows). A file once written is never rewritten: the
   load's ledger knows a file by its key, so a key must never come to hold other rows. A re-run
   finds its ids there and writes nothing; a batch that came late adds a file of its new ids;
2. a write marker of the split (``keys.split_writer``) names the partitions written, so the load
   finds them, and says the hour was split: a batch landing in it later is loaded only for the ids
   the warehouse lacks;
3. the batches are deleted, each only if it is still the object that was read (same ETag).

Between 1 and 3 the lake holds both, and every reader keeps one row per id; readers list the batches
before the symbol's partitions, so a batch the split deletes meanwhile is in a file they list. The
load inserts a split file's rows only for ids ``raw.trades`` lacks (``keys.is_rewritten``): it
loaded the batches already.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from include.lake.compaction import one_row_per_id, trade_files
from include.lake.keys import (
    BATCH_PREFIX,
    SPLIT_SOURCE,
    batch_times_of_key,
    hour_of_key,
    partition_of,
    split_writer,
    trade_key,
)
from include.lake.markers import mark_written
from include.lake.store import ObjectInfo, ObjectStore
from include.lake.trades import parquet_bytes, read_table
from include.timeutil import HOUR_US

log = logging.getLogger(__name__)


@dataclass
class Split:
    """What one split did: the batch partitions it split, the files it wrote and the batches it deleted."""

    partitions: list[str] = field(default_factory=list)
    batches: int = 0
    trades: int = 0
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.batches} stream batches in {len(self.partitions)} hour(s) -> {len(self.written)} symbol-hour "
            f"files ({self.trades} trades), {len(self.deleted)} batches deleted"
        )


def batches_before(lake: ObjectStore, before_us: int) -> dict[str, list[ObjectInfo]]:
    """The stream batches of every hour partition that starts before ``before_us``, by partition."""
    due: dict[str, list[ObjectInfo]] = defaultdict(list)
    for info in lake.list(BATCH_PREFIX):
        if batch_times_of_key(info.key) is not None and hour_of_key(info.key) < before_us:
            due[partition_of(info.key)].append(info)
    return dict(sorted(due.items()))


def split_batches(lake: ObjectStore, before_us: int) -> Split:
    """Split the stream batches of every hour before ``before_us`` into files per symbol-hour."""
    result = Split()
    for partition, infos in batches_before(lake, before_us).items():
        split_partition(lake, partition, infos, result)
    if result.batches:
        log.info("split %s", result.summary())
    return result


def split_partition(lake: ObjectStore, partition: str, infos: list[ObjectInfo], result: Split) -> None:
    """Write one batch partition's new trades per symbol-hour, announce them, then delete the batches read."""
    read = {(info.key, info.etag) for info in infos}
    table = pa.concat_tables([read_table(lake.get(info.key)) for info in infos])
    written = [key for part in _symbol_hours(table) if (key := _write_new_ids(lake, part)) is not None]
    mark_written(lake, split_writer(partition), written)  # also when nothing was new: the hour was split
    result.partitions.append(partition)
    result.batches += len(infos)
    result.trades += len(table)
    result.written += written
    for info in lake.list(partition):
        if (info.key, info.etag) in read:
            lake.delete(info.key)
            result.deleted.append(info.key)


def _symbol_hours(table: pa.Table) -> list[pa.Table]:
    """The rows of each symbol and hour of trade time, one row per id, in id order: sorted once, then sliced."""
    ordered = table.sort_by([("symbol", "ascending"), ("trade_time", "ascending")])
    symbols = ordered["symbol"].to_numpy(zero_copy_only=False)
    hours = pc.cast(ordered["trade_time"], pa.int64()).to_numpy() // HOUR_US
    starts = np.flatnonzero(np.r_[True, (symbols[1:] != symbols[:-1]) | (hours[1:] != hours[:-1])])
    ends = np.r_[starts[1:], len(ordered)]
    return [one_row_per_id(ordered.slice(start, end - start)) for start, end in zip(starts, ends, strict=True)]


def _write_new_ids(lake: ObjectStore, rows: pa.Table) -> str | None:
    """Write the symbol-hour's rows whose ids its partition does not hold yet, as one file; its key,
    or None when every id is there already."""
    hour = int(pc.cast(rows["trade_time"], pa.int64())[0].as_py()) // HOUR_US * HOUR_US
    symbol = rows["symbol"][0].as_py()
    held = [
        read_table(lake.get(info.key), ["trade_id"])["trade_id"].to_numpy() for info in trade_files(lake, symbol, hour)
    ]
    if held:
        rows = rows.filter(pa.array(~np.isin(rows["trade_id"].to_numpy(), np.concatenate(held))))
    if not len(rows):
        return None
    ids = rows["trade_id"].to_numpy()
    key = trade_key(symbol, hour, SPLIT_SOURCE, int(ids[0]), int(ids[-1]))
    lake.put(key, parquet_bytes(rows))
    return key
