"""Fixtures of the warehouse tests: a lake folder, and Snowflake through fakesnow behind Airflow's hook."""

import json

import fakesnow
import pytest

from include.lake.store import LocalStore
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.snowflake_backend import SnowflakeWarehouse
from tests.support.warehouse import FAKESNOW_FILE_ERRORS, SNOWFLAKE_OBJECT_VERSIONS


@pytest.fixture
def lake(tmp_path):
    return LocalStore(tmp_path / "lake")


@pytest.fixture
def snowflake(monkeypatch):
    """fakesnow in-process behind Airflow's SnowflakeHook (the hook drops fakesnow's http protocol)."""
    connection = {"conn_type": "snowflake", "login": "loader", "password": "not-a-secret"}
    connection["extra"] = {"account": "cryptoflow", "database": "cryptoflow", "warehouse": "cryptoflow_wh"}
    monkeypatch.setenv("AIRFLOW_CONN_SNOWFLAKE_DEFAULT", json.dumps(connection))
    with fakesnow.patch():
        yield


@pytest.fixture
def snowflake_warehouse(snowflake, lake):
    """A set-up Snowflake warehouse (the object-level versions) whose stage is ``lake``."""
    with SnowflakeWarehouse(file_errors=FAKESNOW_FILE_ERRORS) as warehouse:
        assert warehouse.setup(lake.url, "cryptoflow_lake", account_level=False) == SNOWFLAKE_OBJECT_VERSIONS
        yield warehouse


@pytest.fixture(params=["duckdb", "snowflake"])
def each_warehouse(request, tmp_path):
    """Each backend in turn: DuckDB in a file, Snowflake through fakesnow (its stage on ``lake``)."""
    if request.param == "snowflake":
        yield request.getfixturevalue("snowflake_warehouse")
        return
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        yield warehouse
