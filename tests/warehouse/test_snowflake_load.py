"""Snowflake through fakesnow: COPY INTO from a file:// stage via the Airflow provider, exactly once."""

import json
import re

import pyarrow as pa
import pytest

from include.cli import main
from include.lake.markers import mark_written
from include.lake.trades import parquet_bytes, write_trades
from include.timeutil import HOUR_US
from include.warehouse.load import load_lake
from include.warehouse.snapshot import COPIED_TABLES
from include.warehouse.snowflake_backend import (
    ACCOUNT_LEVEL_VERSIONS,
    LOADER_ROLE,
    READER_ROLE,
    render_setup,
    setup_versions,
    stage_location,
)
from tests.support.trades import START_US, columns, fill_lake, lake_rows
from tests.support.warehouse import SNOWFLAKE_OBJECT_VERSIONS, loaded_at_of_each_file

TRADE_COLUMNS = "symbol, trade_id, price, quantity, quote_quantity, trade_time, is_buyer_maker, source"


@pytest.fixture
def warehouse(snowflake_warehouse):
    return snowflake_warehouse


def snowflake_rows(warehouse) -> list[tuple]:
    return warehouse.execute(f"select {TRADE_COLUMNS} from raw.trades")


def test_copy_into_loads_every_file_exactly_and_a_rerun_is_load_skipped(warehouse, lake):
    fill_lake(lake)
    first = load_lake(lake, warehouse)
    assert (first.files_loaded, first.rows_loaded, first.files_skipped, first.refused) == (12, 6000, 0, [])
    rows = snowflake_rows(warehouse)
    assert len(rows) == len(set(rows)) == 6000
    assert set(rows) == lake_rows(lake)
    # A re-run of the same files: Snowflake's load history says LOAD_SKIPPED, counts unchanged.
    again = warehouse.load(lake, lake.list("trades/"))
    assert (again.files_loaded, again.rows_loaded, again.files_skipped) == (0, 0, 12)
    assert warehouse.execute("select count(*) from raw.trades") == [(6000,)]


def test_every_copy_stamps_its_rows_with_one_loaded_at_and_a_later_load_later(warehouse, lake):
    fill_lake(lake)
    load_lake(lake, warehouse)
    (first,) = set.union(*loaded_at_of_each_file(lake, warehouse.execute).values())
    assert first is not None
    assert first.utcoffset() is not None
    # A load that died between its COPY and its stamp left rows without loaded_at: the next stamps them.
    died = write_trades(lake, columns("BTCUSDT", 70_000, 7, START_US + HOUR_US), "backfill", START_US)
    warehouse.execute(
        f"copy into raw.trades from @raw.lake files = ('{died[0]}') file_format = (format_name = 'raw.lake_parquet') "
        "match_by_column_name = case_insensitive on_error = abort_statement"
    )
    assert warehouse.execute("select count(*) from raw.trades where loaded_at is null") == [(7,)]
    later = write_trades(lake, columns("ETHUSDT", 80_000, 5, START_US + HOUR_US), "backfill", START_US)
    mark_written(lake, "repair-test", later)
    assert load_lake(lake, warehouse).rows_loaded == 5
    stamps = loaded_at_of_each_file(lake, warehouse.execute)
    (second,) = stamps[later[0]]
    assert stamps[died[0]] == {second}
    assert second > first
    assert warehouse.execute("select count(*) from raw.trades where loaded_at is null") == [(0,)]


def test_only_announced_files_are_copied_and_a_new_one_loads(warehouse, lake):
    fill_lake(lake, files=2)
    assert load_lake(lake, warehouse).files_loaded == 4
    keys = write_trades(lake, columns("BTCUSDT", 70_000, 7, START_US + HOUR_US), "backfill", START_US)
    mark_written(lake, "repair-BTCUSDT-test", keys)
    new = load_lake(lake, warehouse)
    assert (new.files_loaded, new.rows_loaded, new.files_listed, new.partitions_listed) == (1, 7, 1, 1)
    assert warehouse.execute("select count(*) from raw.trades where trade_id >= 70000") == [(7,)]


def test_corrupt_and_foreign_files_are_refused_by_name_and_the_rest_load(warehouse, lake):
    fill_lake(lake, files=2)
    corrupt = "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=08/stream-900-901.parquet"
    foreign = "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=08/stream-902-903.parquet"
    lake.put(corrupt, b"PAR1 this is not parquet")
    lake.put(foreign, parquet_bytes(pa.table({"id": [1, 2], "price": [1.5, 2.5]})))
    result = load_lake(lake, warehouse)
    assert (result.files_loaded, result.rows_loaded) == (4, 2000)
    assert sorted(reason.split(":")[0] for reason in result.refused) == [corrupt, foreign]
    assert all("COPY INTO refused it" in reason for reason in result.refused)
    assert warehouse.execute("select count(*) from raw.trades") == [(2000,)]
    # Remembered: a reconcile does not report them again.
    assert load_lake(lake, warehouse, full=True).refused == []


def test_setup_is_versioned_and_applies_each_version_once(warehouse, lake):
    assert warehouse.setup(lake.url, "cryptoflow_lake", account_level=False) == []
    assert sorted(warehouse.execute("select version from raw.schema_migrations")) == [
        (v,) for v in SNOWFLAKE_OBJECT_VERSIONS
    ]
    schemas = {row[0].lower() for row in warehouse.execute("select schema_name from information_schema.schemata")}
    assert {"raw", "staging", "marts"} <= schemas


def test_every_setup_version_renders_and_grants_what_each_role_needs():
    statements = {
        migration.version: render_setup(migration.path, "cryptoflow", "s3://lake-bucket", "cryptoflow_lake")
        for migration in setup_versions()
    }
    assert list(statements) == ["V001", "V002", "V003", "V004", "V005", "V006", "V007", "V008", "V009"]
    text = {version: "\n".join(parts).lower() for version, parts in statements.items()}
    assert not any("${" in body for body in text.values())
    assert f"create role if not exists {LOADER_ROLE}" in text["V001"]
    assert f"create role if not exists {READER_ROLE}" in text["V001"]
    assert "url = 's3://lake-bucket/' storage_integration = cryptoflow_lake" in text["V002"]
    grants = "\n".join(text[version] for version in ("V003", "V005", "V007", "V009")).splitlines()
    # The loader copies through the stage and its format into raw and stamps loaded_at (an update);
    # the reader only reads: marts, and of raw the two health tables and the gap fills.
    for needed in (
        "on stage cryptoflow.raw.lake",
        "on file format cryptoflow.raw.lake_parquet",
        "schema cryptoflow.raw",
        "grant update on all tables in schema cryptoflow.raw",
        "grant update on future tables in schema cryptoflow.raw",
    ):
        assert any(needed in line and LOADER_ROLE in line for line in grants), needed
    reader = [line for line in grants if line.endswith(READER_ROLE)]
    assert reader
    assert all("select" in line or "usage" in line for line in reader)
    assert not any(
        word in line
        for line in reader
        for word in (
            "insert",
            "update",
            "delete",
            "all tables in schema cryptoflow.raw",
            "future tables in schema cryptoflow.raw",
            "raw.trades",
        )
    )
    # Every table the dashboard reads on Snowflake (dashboard/queries.py, the snapshot's tables) is
    # readable by the reader: marts' through V003's future-tables grant (marts.candle_audit is
    # created by the audit, after it), raw's health tables one by one (V007, V009), and no other raw table.
    marts = f"grant select on future tables in schema cryptoflow.marts to role {READER_ROLE}"
    needed = {
        marts if schema == "marts" else f"grant select on table cryptoflow.{schema}.{table} to role {READER_ROLE}"
        for schema, table, _ in COPIED_TABLES.values()
    }
    assert needed <= set(reader), needed - set(reader)
    assert f"grant usage on schema cryptoflow.raw to role {READER_ROLE}" in reader
    assert len([line for line in reader if "cryptoflow.raw." in line]) == 3
    # The tables granted exist: created by an earlier version.
    created = set(re.findall(r"create table if not exists (\S+)", "\n".join(text.values())))
    assert {line.split()[4] for line in reader if " on table " in line} <= created


def test_every_version_that_grants_is_applied_only_at_account_level():
    """Grants need SECURITYADMIN or the objects' owner: an objects-only setup skips them (so does the
    fakesnow fixture, whose parser rejects GRANT: fakesnow cannot check who may read what)."""
    granting = {
        migration.version
        for migration in setup_versions()
        if re.search(r"^\s*grant\b", migration.path.read_text(), re.MULTILINE | re.IGNORECASE)
    }
    assert granting == {"V001", "V003", "V005", "V007", "V009"}
    assert granting <= ACCOUNT_LEVEL_VERSIONS


def test_a_local_lake_needs_no_storage_integration():
    assert stage_location("file:///tmp/lake", "cryptoflow_lake") == "url = 'file:///tmp/lake/'"


def test_the_load_and_setup_commands_run_on_snowflake(snowflake, lake, monkeypatch, capsys):
    monkeypatch.setenv("WAREHOUSE", "snowflake")
    monkeypatch.setenv("LAKE_URL", lake.url)
    fill_lake(lake, files=2)
    assert main(["warehouse-setup", "--objects-only"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"applied": SNOWFLAKE_OBJECT_VERSIONS}
    assert main(["load"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"files": 4, "rows": 2000, "refused": []}
    assert main(["load", "--full"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"files": 0, "rows": 0, "refused": []}
