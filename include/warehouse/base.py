"""What every warehouse backend offers: load lake files exactly once, and keep a discovery cursor.

Two backends implement it: DuckDB (the embedded default) and Snowflake (production), chosen by
``WAREHOUSE``. Both hold the same ``raw.trades`` contract, both refuse a file that is not a trade
file of the contract (named, with the reason) while the other files still load, and both remember
a refused file by its ETag, so it is reported once, not on every run, until it is replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from include.lake.store import ObjectInfo, ObjectStore
from include.lake.trades import TRADE_SCHEMA, read_table

if TYPE_CHECKING:
    from include.warehouse.sql import Dialect
    from include.warehouse.status import StatusRefresh


class RefusedFile(ValueError):
    """A lake object that is not a trade file of the contract: named, with the reason."""


@dataclass
class LoadResult:
    files_loaded: int = 0
    rows_loaded: int = 0
    files_skipped: int = 0  # loaded before (ledger or Snowflake's load history), or refused before
    refused: list[str] = field(default_factory=list)  # "key: reason", one per newly refused file
    files_listed: int = 0
    partitions_listed: int | None = None  # None: the whole lake was listed
    status_objects: int = 0  # changed status objects (heartbeats, ledger windows) read into raw

    def summary(self) -> str:
        listed = "the whole lake" if self.partitions_listed is None else f"{self.partitions_listed} partitions"
        return (
            f"loaded {self.files_loaded} files, {self.rows_loaded} rows; skipped {self.files_skipped} seen "
            f"before; refused {len(self.refused)}; "
            f"listed {self.files_listed} files in {listed}; read {self.status_objects} changed status objects"
        )

    def as_dict(self) -> dict[str, object]:
        return {"files": self.files_loaded, "rows": self.rows_loaded, "refused": self.refused}


class Warehouse(Protocol):
    dialect: Dialect  # the SQL differences of the backend (include/warehouse/sql.py)

    def execute(self, sql: str, params: Sequence[Any] | None = None, /) -> list[tuple]: ...

    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo]) -> LoadResult:
        """Load the given lake objects that are not loaded yet; each exactly once."""
        ...

    def read_cursor(self) -> dict[str, str] | None:
        """The write markers (key -> ETag) consumed by the last load; None before the first."""
        ...

    def save_cursor(self, cursor: dict[str, str]) -> None: ...

    def refresh_status(self, lake: ObjectStore) -> StatusRefresh:
        """Bring raw.stream_status and raw.completeness up to date with the lake's status objects."""
        ...

    def close(self) -> None: ...


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
