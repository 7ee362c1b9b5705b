"""The SQL helpers of the warehouse package: bound values in multi-row slices, and one transaction.

Everything here runs through an ``execute`` and a ``Dialect`` (include/warehouse/shared.py), so the
same code serves DuckDB and Snowflake: the backends' bookkeeping, the status refresh, the
migrations, the snapshot and the candle audit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from include.warehouse.shared import Dialect, Execute

T = TypeVar("T")

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
