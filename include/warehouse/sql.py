"""What the SQL backends share: the discovery cursor, remembered refusals and transactions.

DuckDB and Snowflake keep the same bookkeeping tables (``raw.load_cursor``: the write markers the
last load consumed, as JSON text; ``raw.load_refusals``: refused files by key and ETag) and use
them the same way. Only the SQL dialect differs, and ``Dialect`` names each difference.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from include.lake.store import ObjectInfo
from include.warehouse.base import LoadResult, RefusedFile

log = logging.getLogger(__name__)
T = TypeVar("T")


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


ROWS_PER_STATEMENT = 200  # rows of bound values per insert: well within both connectors' limits


def row_chunks(items: Sequence[T], size: int = ROWS_PER_STATEMENT) -> list[Sequence[T]]:
    """``items`` in slices of at most ``size``: one multi-row statement each."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def in_transaction(execute: Execute, dialect: Dialect, work: Callable[[], None]) -> None:
    """Run ``work`` in one transaction: all of it commits, or (on any exception) none of it."""
    execute(dialect.begin)
    try:
        work()
        execute("commit")
    except BaseException:
        execute("rollback")
        raise


class LoadBookkeeping:
    """The cursor and the refusals of one warehouse, through its ``execute`` and its dialect."""

    def __init__(self, execute: Execute, dialect: Dialect) -> None:
        self.execute = execute
        self.dialect = dialect

    def read_cursor(self) -> dict[str, str] | None:
        rows = self.execute("select markers from raw.load_cursor")
        return json.loads(rows[0][0]) if rows else None

    def save_cursor(self, cursor: dict[str, str]) -> None:
        def replace() -> None:
            self.execute("delete from raw.load_cursor")
            self.execute(
                f"insert into raw.load_cursor (markers) values ({self.dialect.placeholder})", [json.dumps(cursor)]
            )

        in_transaction(self.execute, self.dialect, replace)

    def not_refused(self, infos: Iterable[ObjectInfo]) -> list[ObjectInfo]:
        """The objects not refused before as they are now: a replaced file (a new ETag) is tried again."""
        candidates = list(infos)
        if not candidates:
            return []
        refused = {(key, etag) for key, etag in self.execute("select file_key, etag from raw.load_refusals")}
        return [info for info in candidates if (info.key, info.etag) not in refused]

    def refuse(self, info: ObjectInfo, error: RefusedFile, result: LoadResult) -> None:
        """Report the file once (in ``result``) and remember it by key and ETag."""
        log.error("refused %s", error)
        result.refused.append(str(error))
        placeholders = ", ".join([self.dialect.placeholder] * 3)
        self.execute(
            f"insert into raw.load_refusals (file_key, etag, reason) values ({placeholders})",
            [info.key, info.etag, str(error)],
        )
