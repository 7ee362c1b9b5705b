"""Load every lake trade file that the warehouse does not hold yet."""

from __future__ import annotations

from include.lake.store import ObjectStore
from include.warehouse.duckdb_backend import DuckDBWarehouse, LoadResult

TRADES_PREFIX = "trades/"


def load_lake(lake: ObjectStore, warehouse: DuckDBWarehouse) -> LoadResult:
    """Every Parquet object under ``trades/`` not yet in the ledger, exactly once."""
    candidates = (info for info in lake.list(TRADES_PREFIX) if info.key.endswith(".parquet"))
    return warehouse.load(lake, candidates)
