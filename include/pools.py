"""The Airflow pools of the product: created before the scheduler starts, used by the DAGs.

A pool is a named number of slots; a task that names it waits for a free slot. Kept here, outside
any backend, so the DAGs, ``make up``, the compose deployment and the tests agree on the names.
``python -m include.pools`` creates them (or sets them back to these slots) with Airflow's command
line: the ``airflow-init`` service of docker-compose.yaml runs it after the migrations.
"""

from __future__ import annotations

import subprocess
import sys
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


def set_commands(airflow: str = "airflow") -> list[list[str]]:
    """``airflow pools set`` for every pool, with ``airflow`` the command to run."""
    return [[airflow, "pools", "set", pool.name, str(pool.slots), pool.description] for pool in POOLS]


def main() -> int:
    """Set every pool; the exit status of the first command that fails (its output says why), else 0."""
    for argv in set_commands():
        try:
            status = subprocess.run(argv, check=False).returncode
        except FileNotFoundError:
            print("error: no airflow command on PATH to create the pools with", file=sys.stderr)
            return 2
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
