"""The embedded warehouse: DuckDB, with the raw trade contract and a load ledger.

Every lake file reaches ``raw.trades`` exactly once. A file's rows and its ledger row (key, size,
etag, rows, loaded_at) are written in one transaction, so a crash mid-load leaves neither, and a
re-run loads it then; a file already in the ledger is never loaded again. Objects are read through
the product's object-store layer, never through DuckDB's httpfs (which cannot load offline).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from include.lake.store import ObjectInfo, ObjectStore
from include.lake.trades import TRADE_SCHEMA, read_table

log = logging.getLogger(__name__)
# DuckDB allows one writing process per file: in Airflow every writer runs in this one-slot pool.
AIRFLOW_POOL = "duckdb_writer"

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
    ingested_at timestamptz not null,
    file_key varchar not null
);
create table if not exists raw.load_ledger (
    file_key varchar primary key,
    size bigint not null,
    etag varchar not null,
    row_count bigint not null,
    loaded_at timestamptz not null default now()
);
"""


class RefusedFile(ValueError):
    """A lake object that is not a trade file of the contract: named, with the reason."""


@dataclass
class LoadResult:
    files_loaded: int = 0
    rows_loaded: int = 0
    refused: list[str] = field(default_factory=list)  # "key: reason", one per refused file

    def summary(self) -> str:
        return f"loaded {self.files_loaded} files, {self.rows_loaded} rows; refused {len(self.refused)}"


def _contract_table(key: str, data: bytes) -> pa.Table:
    try:
        table = read_table(data)
    except (pa.ArrowInvalid, OSError) as error:
        raise RefusedFile(f"{key}: not readable Parquet ({error})") from error
    if not table.schema.equals(TRADE_SCHEMA, check_metadata=False):
        raise RefusedFile(
            f"{key}: schema is not the raw trade contract: {table.schema.to_string(show_field_metadata=False)}"
        )
    return table


class DuckDBWarehouse:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.connection = duckdb.connect(str(path))
        self.connection.execute(SCHEMA_SQL)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> DuckDBWarehouse:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def not_loaded(self, infos: Iterable[ObjectInfo]) -> list[ObjectInfo]:
        """The objects the ledger does not hold, by key (an index lookup, not a scan per file)."""
        candidates = list(infos)
        if not candidates:
            return []
        keys = pa.table({"file_key": [info.key for info in candidates]})
        self.connection.register("candidate_keys", keys)
        try:
            loaded = {
                row[0]
                for row in self.connection.execute(
                    "select c.file_key from candidate_keys c join raw.load_ledger l using (file_key)"
                ).fetchall()
            }
        finally:
            self.connection.unregister("candidate_keys")
        return [info for info in candidates if info.key not in loaded]

    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo], batch_rows: int = 2_000_000) -> LoadResult:
        """Load the objects the ledger does not hold; rows and ledger rows commit together.

        Files are grouped into transactions of about ``batch_rows`` rows: one commit per file would
        cost more than the rows themselves for small micro-batch files.
        """
        result = LoadResult()
        tables: list[pa.Table] = []
        ledger: list[tuple[str, int, str, int]] = []
        for info in self.not_loaded(infos):
            try:
                table = _contract_table(info.key, lake.get(info.key))
            except RefusedFile as error:
                log.error("refused %s", error)
                result.refused.append(str(error))
                continue
            tables.append(table.append_column("file_key", pa.array([info.key] * len(table), pa.string())))
            ledger.append((info.key, info.size, info.etag, len(table)))
            if sum(len(t) for t in tables) >= batch_rows:
                self._commit(tables, ledger, result)
                tables, ledger = [], []
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
