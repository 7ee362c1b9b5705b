"""The embedded warehouse: DuckDB, with the raw trade contract and a load ledger.

Every lake file reaches ``raw.trades`` exactly once. A batch of files commits its rows and its
ledger rows (key, size, etag, rows, loaded_at) in one transaction, so a crash or a kill mid-load
leaves neither, and a re-run loads them then; a file already in the ledger is never loaded again.
Every row of a commit carries the same ``loaded_at`` (the commit's transaction time), which dbt's
staging reads incrementally.
Objects are read through the product's object-store layer, never through DuckDB's httpfs (which
cannot load offline). The schema is the versioned SQL in ``duckdb_setup/``, applied on open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from include.lake.keys import is_compacted
from include.lake.store import ObjectInfo, ObjectStore
from include.lake.trades import TRADE_SCHEMA, read_table
from include.warehouse.backend import SQLWarehouse, new_ids_only
from include.warehouse.migrations import migrate
from include.warehouse.shared import DUCKDB, LoadResult, RefusedFile
from include.warehouse.sql import in_transaction

log = logging.getLogger(__name__)

SETUP_DIR = Path(__file__).with_name("duckdb_setup")
READ_THREADS, READ_WINDOW = 8, 64
# Rows per transaction: one commit per file would cost more than the rows of a small micro-batch.
BATCH_ROWS = 2_000_000
# A compacted (or split) file's rows, once per id, but the ids raw.trades holds already. The id range
# per symbol bounds the scan of raw.trades (zone maps), so its cost follows the hour, not the history.
INSERT_COMPACTED = """
insert into raw.trades by name
with bounds as (
    select exchange, symbol, min(trade_id) as low, max(trade_id) as high
    from incoming_compacted group by exchange, symbol
),
held as (
    select t.exchange, t.symbol, t.trade_id
    from raw.trades as t
    inner join bounds as b
        on t.exchange = b.exchange and t.symbol = b.symbol and t.trade_id between b.low and b.high
)
select c.*, now() as loaded_at
from (
    -- one row per id: a load that fell behind may list a split file and the compacted file after it
    select * from incoming_compacted
    qualify row_number() over (partition by exchange, symbol, trade_id order by ingested_at, source) = 1
) as c
anti join held as h using (exchange, symbol, trade_id)
"""


def contract_table(key: str, data: bytes) -> pa.Table:
    """The file's rows, if it is a readable Parquet file with exactly the raw trade schema."""
    try:
        table = read_table(data)
    except (pa.ArrowInvalid, OSError) as error:
        raise RefusedFile(f"{key}: not readable Parquet ({error})") from error
    if not table.schema.equals(TRADE_SCHEMA, check_metadata=False):
        raise RefusedFile(
            f"{key}: schema is not the raw trade contract: {table.schema.to_string(show_field_metadata=False)}"
        )
    return table


def _read(lake: ObjectStore, info: ObjectInfo) -> pa.Table | RefusedFile | None:
    """The file's rows, why it is refused, or None when it is gone since the listing (compacted away:
    its rows are in the compacted file, which ``load_lake`` looks for in the file's partition)."""
    try:
        return contract_table(info.key, lake.get(info.key))
    except RefusedFile as error:
        return error
    except FileNotFoundError:
        log.info("%s is gone since the listing (compacted); its rows come with the compacted file", info.key)
        return None


class DuckDBWarehouse(SQLWarehouse):
    dialect = DUCKDB

    def __init__(self, path: Path, batch_rows: int = BATCH_ROWS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.batch_rows = batch_rows
        super().__init__(duckdb.connect(str(path)))
        self.execute("set enable_progress_bar = false")  # it would print into task logs
        for version in migrate(self.execute, DUCKDB, SETUP_DIR):
            log.info("applied DuckDB setup %s to %s", version, path)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        # Through the attribute on every call, so a test can wrap the connection to inject faults.
        return self.connection.execute(sql, params).fetchall()

    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo]) -> LoadResult:
        """Load the objects the ledger does not hold, in transactions of about ``batch_rows`` rows."""
        candidates = list(infos)
        new = self.not_loaded(candidates)
        result = LoadResult(files_skipped=len(candidates) - len(new))
        ids_only = new_ids_only(lake, candidates)
        batch = _Batch(ids_only)
        for info, table in _read_all(lake, new):
            if table is None:
                result.vanished.append(info.key)
                continue
            if isinstance(table, RefusedFile):
                self.refuse(info, table, result)
                continue
            batch.add(info, table)
            if batch.rows >= self.batch_rows:
                self._commit(lake, batch, result)
                batch = _Batch(ids_only)
        if batch.files:
            self._commit(lake, batch, result)
        return result

    def _commit(self, lake: ObjectStore, batch: _Batch, result: LoadResult) -> None:
        """The batch's rows and its ledger rows, in one transaction.

        A compacted file's rows (and a file's of a compacted partition: ``new_ids_only``) are inserted
        only for ids ``raw.trades`` does not hold: the files it replaced were most likely loaded
        already, and compaction must never load a trade twice.
        """
        inserted = 0
        self.connection.register("incoming", batch.table(ids_only=False))
        self.connection.register("incoming_compacted", batch.table(ids_only=True))
        self.connection.register("incoming_ledger", batch.ledger())
        try:
            # now() is the transaction's start: one loaded_at for every row and ledger row of the commit.
            def insert() -> None:
                nonlocal inserted
                inserted = self.execute("insert into raw.trades by name select *, now() as loaded_at from incoming")[0][
                    0
                ]
                inserted += self.execute(INSERT_COMPACTED)[0][0]
                self.execute("insert into raw.load_ledger by name select *, now() as loaded_at from incoming_ledger")

            in_transaction(self.execute, DUCKDB, insert)
        finally:
            for name in ("incoming", "incoming_compacted", "incoming_ledger"):
                self.connection.unregister(name)
        result.files_loaded += len(batch.files)
        result.rows_loaded += inserted
        result.compacted += [info.key for info in batch.files if is_compacted(info.key)]


class _Batch:
    """Files read and not committed yet: their rows and what their ledger rows will say."""

    def __init__(self, ids_only: set[str]) -> None:
        self.ids_only = ids_only  # the keys whose rows go in only for ids raw.trades lacks
        self.files: list[ObjectInfo] = []
        self.tables: list[pa.Table] = []
        self.rows = 0

    def table(self, ids_only: bool) -> pa.Table:
        """The rows of the batch's files to load for new ids only (compacted ones), or of the others."""
        tables = [t for info, t in zip(self.files, self.tables, strict=True) if (info.key in self.ids_only) == ids_only]
        return pa.concat_tables(tables) if tables else TRADE_SCHEMA.empty_table()

    def add(self, info: ObjectInfo, table: pa.Table) -> None:
        self.files.append(info)
        self.tables.append(table)
        self.rows += len(table)

    def ledger(self) -> pa.Table:
        return pa.table(
            {
                "file_key": [info.key for info in self.files],
                "size": [info.size for info in self.files],
                "etag": [info.etag for info in self.files],
                "row_count": [len(table) for table in self.tables],
            }
        )


def _read_all(lake: ObjectStore, infos: list[ObjectInfo]) -> Iterator[tuple[ObjectInfo, pa.Table | RefusedFile | None]]:
    """Each object with its rows (or why it is refused), in order.

    Reads overlap in threads (an S3 GET is mostly waiting, Parquet decoding releases the GIL); a
    window of files at a time keeps memory bounded however long the backlog.
    """
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for start in range(0, len(infos), READ_WINDOW):
            window = infos[start : start + READ_WINDOW]
            yield from zip(window, pool.map(partial(_read, lake), window), strict=True)
