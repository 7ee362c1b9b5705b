"""Fixtures of the alert tests: the warehouse tests' lake and backends (DuckDB, Snowflake on fakesnow)."""

from tests.warehouse.conftest import each_warehouse, lake, snowflake, snowflake_warehouse  # noqa: F401
