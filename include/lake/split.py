"""The hourly split: a closed hour's stream batches become one file per symbol-hour.

The stream writes one object per flush holding every symbol of its shard (a batch,
include/lake/trades.py), so the lake's PUTs follow the flushes, not the number of symbols. Once an
hour has closed, its batches (the partition of their first trade's hour) are split into
``trades/.../symbol=S/date=D/hour=H/split-<first_id>-<last_id>.parquet``, one per symbol and hour of
trade time, one row per trade id (the first written). From there the repair and the compaction work
per symbol-hour as they always did.

Every step can crash and be run again:

1. each symbol-hour's file is written (one atomic PUT; its key and bytes follow from the rows), with
   the rows of the split file already there, if any, which is then deleted: a symbol-hour has one;
2. a write marker of the split names the partitions written, so the load finds them;
3. the batches are deleted, each only if it is still the object that was read (same ETag).

Between 1 and 3 the lake holds both, and every reader keeps one row per id. The load inserts a split
file's rows only for ids ``raw.trades`` lacks (``keys.is_rewritten``): it loaded the batches already.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from include.lake.compaction import one_row_per_id
from include.lake.keys import (
    BATCH_PREFIX,
    SPLIT_SOURCE,
    batch_times_of_key,
    hour_of_key,
    hour_prefix,
    partition_of,
    partition_values,
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
    """Write one batch partition's trades per symbol-hour, announce them, then delete the batches read."""
    read = {(info.key, info.etag) for info in infos}
    table = pa.concat_tables([read_table(lake.get(info.key)) for info in infos])
    written = [_write_symbol_hour(lake, part) for part in _symbol_hours(table)]
    values = partition_values(partition)
    mark_written(lake, f"split-{values['date']}T{values['hour']}", written)  # one marker per hour split
    result.partitions.append(partition)
    result.batches += len(infos)
    result.trades += len(table)
    result.written += written
    for info in lake.list(partition):
        if (info.key, info.etag) in read:
            lake.delete(info.key)
            result.deleted.append(info.key)


def _symbol_hours(table: pa.Table) -> list[pa.Table]:
    """The rows of each symbol and hour of trade time, one row per id, in id order."""
    parts = []
    hours = pc.cast(table["trade_time"], pa.int64()).to_numpy() // HOUR_US
    symbols = table["symbol"].to_numpy(zero_copy_only=False)
    for symbol in np.unique(symbols):
        for hour in np.unique(hours[symbols == symbol]):
            parts.append(one_row_per_id(table.filter(pa.array((symbols == symbol) & (hours == hour)))))
    return parts


def _write_symbol_hour(lake: ObjectStore, rows: pa.Table) -> str:
    """Write one symbol-hour's rows as its one split file, with the rows of the split files already
    there (an earlier hour's batch that reached into this one, a re-run, a batch that came late),
    then delete those: written first, so no row is ever only in a deleted file."""
    hour = int(pc.cast(rows["trade_time"], pa.int64())[0].as_py()) // HOUR_US * HOUR_US
    symbol = rows["symbol"][0].as_py()
    earlier = [
        info
        for info in lake.list(hour_prefix(symbol, hour))
        if info.key.rsplit("/", 1)[-1].startswith(f"{SPLIT_SOURCE}-")
    ]
    if earlier:
        rows = one_row_per_id(pa.concat_tables([read_table(lake.get(info.key)) for info in earlier] + [rows]))
    ids = rows["trade_id"].to_numpy()
    key = trade_key(symbol, hour, SPLIT_SOURCE, int(ids[0]), int(ids[-1]))
    lake.put(key, parquet_bytes(rows))
    for info in earlier:
        if info.key != key:
            lake.delete(info.key)
    return key
