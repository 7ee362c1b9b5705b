"""What the two SQL backends share, written once: the connection's life, the discovery cursor, the load
ledger's filter, remembered refusals and the status refresh.

DuckDB and Snowflake keep the same bookkeeping tables (``raw.load_cursor``: the write markers the
last load consumed, as JSON text; ``raw.load_ledger``: every file loaded, by key, written in the
transaction that loaded it; ``raw.load_refusals``: refused files by key and ETag) and use them the
same way. Only the SQL dialect differs, and ``Dialect`` names each difference. A backend
adds how it runs a statement on its connection (``execute``) and how it loads files (``load``).
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Self

from include.lake.keys import (
    BATCH_PREFIX,
    hour_of_key,
    is_compacted,
    is_rewritten,
    marker_key,
    partition_of,
    split_writer,
)
from include.lake.store import ObjectInfo, ObjectStore
from include.warehouse.base import Warehouse
from include.warehouse.shared import Dialect, LoadResult, RefusedFile, StatusRefresh
from include.warehouse.sql import in_transaction, row_chunks
from include.warehouse.status import StatusLoader

log = logging.getLogger(__name__)

# Keys per ledger lookup: one statement per COPY's worth of files (Snowflake's FILES limit), bound values.
KEYS_PER_LOOKUP = 1000


def new_ids_only(lake: ObjectStore, listed: Iterable[ObjectInfo]) -> set[str]:
    """The keys to load keeping only the ids ``raw.trades`` lacks.

    - files that rewrite rows (compacted, or split out of stream batches: ``is_rewritten``);
    - every file of a partition the listing shows compacted: a small file there is one the
      compaction replaced, written again (a spool drained late) after the ledger forgot it;
    - a stream batch of an hour the split has split already (its marker says so): it came late, or
      again (a spooled PUT that had in fact landed), and its trades may be in already."""
    infos = list(listed)
    compacted = {partition_of(info.key) for info in infos if is_compacted(info.key)}
    batch_partitions = {partition_of(info.key) for info in infos if info.key.startswith(BATCH_PREFIX)}
    split = {partition for partition in batch_partitions if lake.exists(marker_key(split_writer(partition)))}
    return {
        info.key
        for info in infos
        if partition_of(info.key) in compacted or partition_of(info.key) in split or is_rewritten(info.key)
    }


class SQLWarehouse(Warehouse):
    """A warehouse over one DB-API connection; a backend names its dialect and adds ``execute`` and ``load``."""

    dialect: ClassVar[Dialect]

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.status = StatusLoader(self.execute, self.dialect)

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None, /) -> list[tuple]: ...

    @abstractmethod
    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo]) -> LoadResult: ...

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def refresh_status(self, lake: ObjectStore) -> StatusRefresh:
        return self.status.refresh(lake)

    def read_cursor(self) -> dict[str, str] | None:
        rows = self.execute("select markers from raw.load_cursor")
        return json.loads(rows[0][0]) if rows else None

    def save_cursor(self, cursor: dict[str, str]) -> None:
        in_transaction(self.execute, self.dialect, lambda: self.replace_cursor(cursor))

    def replace_cursor(self, cursor: dict[str, str]) -> None:
        """The cursor's one row replaced, in the caller's transaction."""
        self.execute("delete from raw.load_cursor")
        self.execute(f"insert into raw.load_cursor (markers) values ({self.dialect.placeholder})", [json.dumps(cursor)])

    def not_refused(self, infos: Iterable[ObjectInfo]) -> list[ObjectInfo]:
        """The objects not refused before as they are now: a replaced file (a new ETag) is tried again."""
        candidates = list(infos)
        if not candidates:
            return []
        refused = {(key, etag) for key, etag in self.execute("select file_key, etag from raw.load_refusals")}
        return [info for info in candidates if (info.key, info.etag) not in refused]

    def not_loaded(self, infos: Iterable[ObjectInfo]) -> list[ObjectInfo]:
        """The objects neither in the ledger (by key) nor refused as they are now (by key and ETag).

        The ledger is looked up for the candidates' keys only, never read whole: the cost follows
        the candidates, not the history.
        """
        candidates = self.not_refused(infos)
        loaded: set[str] = set()
        for keys in row_chunks([info.key for info in candidates], KEYS_PER_LOOKUP):
            marks = ", ".join([self.dialect.placeholder] * len(keys))
            rows = self.execute(f"select file_key from raw.load_ledger where file_key in ({marks})", list(keys))
            loaded.update(row[0] for row in rows)
        return [info for info in candidates if info.key not in loaded]

    def forget_replaced(self, lake: ObjectStore, compacted_keys: Iterable[str]) -> int:
        """Delete the ledger rows of the files each compacted file replaced, once they are gone.

        Compaction deletes an hour's small files (include/lake/compaction.py): their keys can never
        be listed again, so their rows would only make the ledger grow with every flush ever loaded.
        What is gone is read from a listing of the partition now, never assumed; a small file still
        there (a compaction that crashed before deleting it) keeps its row. Returns the rows deleted.
        """
        partitions = {partition_of(key) for key in compacted_keys}
        return sum(self._forget_gone(p, {info.key for info in lake.list(p)}) for p in partitions)

    def forget_gone_batches(self, present_keys: Iterable[str], before_us: int) -> int:
        """Delete the ledger rows of stream batches the hourly split deleted (include/lake/split.py).

        Only a listing of the whole lake says what is gone, and only batches of hours before
        ``before_us``. Should a batch come back after all (a PUT that had landed though it failed,
        uploaded again from a writer's spool), the split's marker of its hour makes the load take only
        the ids the warehouse lacks (``new_ids_only``)."""
        return self._forget_gone(BATCH_PREFIX, set(present_keys), lambda key: hour_of_key(key) < before_us)

    def _forget_gone(self, prefix: str, present: set[str], forgettable: Callable[[str], bool] = bool) -> int:
        """Delete the ledger rows under ``prefix`` of files not ``present`` (and ``forgettable``); how many."""
        rows = self.execute(
            "select file_key from raw.load_ledger"
            f" where substr(file_key, 1, {len(prefix)}) = {self.dialect.placeholder}",
            [prefix],
        )
        gone = [key for (key,) in rows if key not in present and forgettable(key)]
        for start in range(0, len(gone), KEYS_PER_LOOKUP):
            chunk = gone[start : start + KEYS_PER_LOOKUP]
            marks = ", ".join([self.dialect.placeholder] * len(chunk))
            self.execute(f"delete from raw.load_ledger where file_key in ({marks})", chunk)
        return len(gone)

    def refuse(self, info: ObjectInfo, error: RefusedFile, result: LoadResult) -> None:
        """Report the file once (in ``result``) and remember it by key and ETag."""
        log.error("refused %s", error)
        result.refused.append(str(error))
        placeholders = ", ".join([self.dialect.placeholder] * 3)
        self.execute(
            f"insert into raw.load_refusals (file_key, etag, reason) values ({placeholders})",
            [info.key, info.etag, str(error)],
        )
