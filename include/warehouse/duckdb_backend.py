"""The embedded warehouse: DuckDB, with the raw trade contract and a load ledger.

Every lake file reaches ``raw.trades`` exactly once. A file's rows and its ledger row (key, size,
etag, rows, loaded_at) are written in one transaction, so a crash mid-load leaves neither, and a
re-run loads it then; a file already in the ledger is never loaded again. Objects are read through
the product's object-store layer, never through DuckDB's httpfs (which cannot load offline).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import duckdb
import pyarrow as pa

from include.lake.store import ObjectInfo, ObjectStore
from include.warehouse.base import LoadResult, RefusedFile, contract_table

log = logging.getLogger(__name__)

SCHEMA_SQL = """
create schema if not exists raw;
create table if not exists raw.trades (
    exchange varchar not null,
    symbol varchar not null,
    trade_id bigint not null,
    price decimal(38, 8) not null,
    quantity decimal(38, 8) not null,
    quote_quantity decimal(38, 16) not null,
    trade_time timestamptz not null,
    is_buyer_maker boolean not null,
    source varchar not null,
    ingested_at timestamptz not null
);
create table if not exists raw.load_ledger (
    file_key varchar primary key,
    size bigint not null,
    etag varchar not null,
    row_count bigint not null,
    loaded_at timestamptz not null default now()
);
create table if not exists raw.load_refusals (
    file_key varchar not null,
    etag varchar not null,
    reason varchar not null,
    refused_at timestamptz not null default now(),
    primary key (file_key, etag)
);
create table if not exists raw.load_cursor (
    markers json not null,
    saved_at timestamptz not null default now()
);
"""


READ_THREADS, READ_WINDOW = 8, 64


def _read(lake: ObjectStore, info: ObjectInfo) -> pa.Table | RefusedFile:
    try:
        return contract_table(info.key, lake.get(info.key))
    except RefusedFile as error:
        return error


class DuckDBWarehouse:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.connection = duckdb.connect(str(path))
        self.connection.execute("set enable_progress_bar = false")  # it would print into task logs
        self.connection.execute(SCHEMA_SQL)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> DuckDBWarehouse:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def not_loaded(self, infos: Iterable[ObjectInfo]) -> list[ObjectInfo]:
        """The objects neither in the ledger (by key) nor refused as they are now (by key and ETag)."""
        candidates = list(infos)
        if not candidates:
            return []
        keys = pa.table({"file_key": [info.key for info in candidates], "etag": [info.etag for info in candidates]})
        self.connection.register("candidate_keys", keys)
        try:
            done = {
                row[0]
                for row in self.connection.execute(
                    "select file_key from candidate_keys semi join raw.load_ledger using (file_key) "
                    "union all "
                    "select file_key from candidate_keys semi join raw.load_refusals using (file_key, etag)"
                ).fetchall()
            }
        finally:
            self.connection.unregister("candidate_keys")
        return [info for info in candidates if info.key not in done]

    def read_cursor(self) -> dict[str, str] | None:
        rows = self.connection.execute("select markers from raw.load_cursor").fetchall()
        return json.loads(rows[0][0]) if rows else None

    def save_cursor(self, cursor: dict[str, str]) -> None:
        self.connection.execute("begin transaction")
        self.connection.execute("delete from raw.load_cursor")
        self.connection.execute("insert into raw.load_cursor (markers) values (?)", [json.dumps(cursor)])
        self.connection.execute("commit")

    def _refuse(self, info: ObjectInfo, error: RefusedFile, result: LoadResult) -> None:
        log.error("refused %s", error)
        result.refused.append(str(error))
        self.connection.execute(
            "insert or ignore into raw.load_refusals (file_key, etag, reason) values (?, ?, ?)",
            [info.key, info.etag, str(error)],
        )

    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo], batch_rows: int = 2_000_000) -> LoadResult:
        """Load the objects the ledger does not hold; rows and ledger rows commit together.

        Files are grouped into transactions of about ``batch_rows`` rows: one commit per file would
        cost more than the rows themselves for small micro-batch files.
        """
        candidates = list(infos)
        new = self.not_loaded(candidates)
        result = LoadResult(files_skipped=len(candidates) - len(new))
        tables: list[pa.Table] = []
        ledger: list[tuple[str, int, str, int]] = []
        pending_rows = 0
        # Reads overlap in threads (an S3 GET is mostly waiting, Parquet decoding releases the GIL);
        # a window of files at a time keeps memory bounded however long the backlog.
        with ThreadPoolExecutor(READ_THREADS) as pool:
            for start in range(0, len(new), READ_WINDOW):
                window = new[start : start + READ_WINDOW]
                for info, table in zip(window, pool.map(partial(_read, lake), window), strict=True):
                    if isinstance(table, RefusedFile):
                        self._refuse(info, table, result)
                        continue
                    tables.append(table)
                    ledger.append((info.key, info.size, info.etag, len(table)))
                    pending_rows += len(table)
                    if pending_rows >= batch_rows:
                        self._commit(tables, ledger, result)
                        tables, ledger, pending_rows = [], [], 0
        if ledger:
            self._commit(tables, ledger, result)
        return result

    def _commit(self, tables: list[pa.Table], ledger: list[tuple[str, int, str, int]], result: LoadResult) -> None:
        rows = pa.concat_tables(tables)
        entries = pa.table(
            {
                "file_key": [entry[0] for entry in ledger],
                "size": [entry[1] for entry in ledger],
                "etag": [entry[2] for entry in ledger],
                "row_count": [entry[3] for entry in ledger],
            }
        )
        self.connection.register("incoming", rows)
        self.connection.register("incoming_ledger", entries)
        try:
            self.connection.execute("begin transaction")
            try:
                self.connection.execute("insert into raw.trades by name select * from incoming")
                self.connection.execute("insert into raw.load_ledger by name select * from incoming_ledger")
                self.connection.execute("commit")
            except BaseException:
                self.connection.execute("rollback")
                raise
        finally:
            self.connection.unregister("incoming")
            self.connection.unregister("incoming_ledger")
        result.files_loaded += len(ledger)
        result.rows_loaded += len(rows)
