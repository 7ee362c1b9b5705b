"""The Airflow pools of the product: created before the scheduler starts, used by the DAGs.

A pool is a named number of slots; a task that names it waits for a free slot. Kept here, outside
any backend, so the DAGs, ``make up`` and the tests agree on the names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pool:
    name: str
    slots: int
    description: str


# Every REST-heavy task shares Binance's request weight per IP: at most this many at once.
EXCHANGE_REST = Pool("exchange_rest", 2, "Tasks that share the exchange's REST weight per IP")
# DuckDB allows one writing process per file, so loads and dbt runs take turns; harmless on Snowflake.
WAREHOUSE_WRITER = Pool("warehouse_writer", 1, "One warehouse writer at a time (DuckDB's single-writer lock)")
POOLS = (EXCHANGE_REST, WAREHOUSE_WRITER)
