"""The types every layer of the warehouse package shares: what a load and a status refresh report, a refused
file, the two SQL dialects, and the ``execute`` callable that SQL runs through.

This module imports nothing of include/warehouse, so any module of it (and the dashboard's queries,
which name a dialect) can import it without an import circle. The layers above it: the
``Warehouse`` protocol (base.py); the SQL helpers (sql.py) and the status refresh (status.py);
what both backends share (backend.py); the backends (duckdb_backend.py, snowflake_backend.py);
and their users (load, discover, migrations, snapshot, audit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class RefusedFile(ValueError):
    """A lake object that is not a trade file of the contract: named, with the reason."""


@dataclass
class LoadResult:
    files_loaded: int = 0
    rows_loaded: int = 0
    files_skipped: int = 0  # loaded before (in the ledger), or refused before
    refused: list[str] = field(default_factory=list)  # "key: reason", one per newly refused file
    files_listed: int = 0
    partitions_listed: int | None = None  # None: the whole lake was listed
    status_objects: int = 0  # changed status objects (heartbeats, ledger windows) read into raw
    compacted: list[str] = field(default_factory=list)  # compacted files loaded (include/lake/compaction.py)
    vanished: list[str] = field(default_factory=list)  # listed, then gone before the read: compacted away

    def summary(self) -> str:
        listed = "the whole lake" if self.partitions_listed is None else f"{self.partitions_listed} partitions"
        return (
            f"loaded {self.files_loaded} files, {self.rows_loaded} rows; skipped {self.files_skipped} seen "
            f"before; refused {len(self.refused)}; "
            f"listed {self.files_listed} files in {listed}; read {self.status_objects} changed status objects"
        )

    def as_dict(self) -> dict[str, object]:
        return {"files": self.files_loaded, "rows": self.rows_loaded, "refused": self.refused}


@dataclass
class StatusRefresh:
    objects_read: int = 0  # changed objects read (refused ones included)
    rows_written: int = 0
    refused: list[str] = field(default_factory=list)  # "key: reason", reported once per ETag


class Execute(Protocol):
    def __call__(self, sql: str, params: Sequence[Any] | None = None, /) -> list[tuple]: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str  # a bound parameter: "?" (DuckDB) or "%s" (Snowflake's connector)
    begin: str  # opens an explicit transaction
    timestamp_type: str  # a UTC instant, for bookkeeping columns
    transactional_ddl: bool  # whether CREATE/ALTER roll back with the transaction


DUCKDB = Dialect("duckdb", "?", "begin transaction", "timestamptz", transactional_ddl=True)
# Snowflake commits every DDL statement at once, whatever transaction is open.
SNOWFLAKE = Dialect("snowflake", "%s", "begin", "timestamp_tz", transactional_ddl=False)
