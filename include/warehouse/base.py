"""What every warehouse backend offers: load lake files exactly once, and keep a discovery cursor.

Two backends implement it: DuckDB (the embedded default) and Snowflake (production), chosen by
``WAREHOUSE``. Both hold the same ``raw.trades`` contract, both refuse a file that is not a trade
file of the contract (named, with the reason) while the other files still load, and both remember
a refused file by its ETag, so it is reported once, not on every run, until it is replaced.
What the two share in code is written once, in include/warehouse/backend.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from include.lake.store import ObjectInfo, ObjectStore
from include.warehouse.shared import Dialect, LoadResult, StatusRefresh


class Warehouse(Protocol):
    dialect: Dialect  # the SQL differences of the backend (include/warehouse/shared.py)

    def execute(self, sql: str, params: Sequence[Any] | None = None, /) -> list[tuple]: ...

    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo]) -> LoadResult:
        """Load the given lake objects that are not loaded yet; each exactly once."""
        ...

    def forget_replaced(self, lake: ObjectStore, compacted_keys: Iterable[str]) -> int:
        """Delete the ledger rows of the files these compacted files replaced, once they are gone."""
        ...

    def forget_gone_batches(self, present_keys: Iterable[str], before_us: int) -> int:
        """Delete the ledger rows of stream batches split away (not among ``present_keys``, a listing of
        the whole lake) whose hour started before ``before_us``."""
        ...

    def read_cursor(self) -> dict[str, str] | None:
        """The write markers (key -> ETag) consumed by the last load; None before the first, or
        whenever the next load must list the whole lake (Snowflake's ledger adopting older loads)."""
        ...

    def save_cursor(self, cursor: dict[str, str]) -> None:
        """Save the cursor of a discovery made from ``read_cursor()``, once its files are loaded."""
        ...

    def refresh_status(self, lake: ObjectStore) -> StatusRefresh:
        """Bring raw.stream_status and raw.completeness up to date with the lake's status objects."""
        ...

    def close(self) -> None: ...
