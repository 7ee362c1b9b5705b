"""Snowflake through fakesnow: COPY INTO from a file:// stage via the Airflow provider, exactly once, by the
load ledger, whatever Snowflake's load history remembers or forgets."""

import json
import re

import pyarrow as pa
import pytest
from snowflake.connector.errors import ProgrammingError

from include.cli import main
from include.lake.markers import mark_written
from include.lake.store import ObjectInfo
from include.lake.trades import parquet_bytes, write_trades
from include.timeutil import HOUR_US
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake
from include.warehouse.snapshot import COPIED_TABLES
from include.warehouse.snowflake_backend import (
    ACCOUNT_LEVEL_VERSIONS,
    LOADER_ROLE,
    READER_ROLE,
    CopyReportError,
    SnowflakeWarehouse,
    render_setup,
    rows_per_file,
    setup_versions,
    stage_location,
)
from tests.support.trades import START_US, columns, fill_lake, lake_rows
from tests.support.warehouse import (
    FAKESNOW_FILE_ERRORS,
    SNOWFLAKE_OBJECT_VERSIONS,
    Crash,
    DyingConnection,
    assert_ledger_is_the_lake,
    forget_load_history,
    ledger_entries,
    loaded_at_of_each_file,
)

TRADE_COLUMNS = "symbol, trade_id, price, quantity, quote_quantity, trade_time, is_buyer_maker, source"


@pytest.fixture
def warehouse(snowflake_warehouse):
    return snowflake_warehouse


def snowflake_rows(warehouse) -> list[tuple]:
    return warehouse.execute(f"select {TRADE_COLUMNS} from raw.trades")


def test_copy_into_loads_every_file_exactly_and_a_rerun_is_skipped_by_the_ledger(warehouse, lake):
    fill_lake(lake)
    first = load_lake(lake, warehouse)
    assert (first.files_loaded, first.rows_loaded, first.files_skipped, first.refused) == (12, 6000, 0, [])
    rows = snowflake_rows(warehouse)
    assert len(rows) == len(set(rows)) == 6000
    assert set(rows) == lake_rows(lake)
    assert_ledger_is_the_lake(lake, ledger_entries(warehouse.execute))
    # A re-run of the same files: the ledger names them all, nothing is copied, counts unchanged.
    again = warehouse.load(lake, lake.list("trades/"))
    assert (again.files_loaded, again.rows_loaded, again.files_skipped) == (0, 0, 12)
    assert warehouse.execute("select count(*) from raw.trades") == [(6000,)]


def test_a_file_older_than_the_load_history_is_never_loaded_a_second_time(warehouse, lake):
    fill_lake(lake, files=2)
    assert load_lake(lake, warehouse).files_loaded == 4
    loaded = ledger_entries(warehouse.execute)
    # 64 days on: Snowflake's load history no longer knows the files (fakesnow keeps one, and
    # would load them again by it), and one of them is uploaded again (a new ETag, the same key).
    assert forget_load_history(warehouse.execute) == 4
    again = sorted(loaded)[0]
    lake.put(again, lake.get(again))
    # The same listing again, then the nightly reconcile's, which lists the whole lake.
    rerun = warehouse.load(lake, lake.list("trades/"))
    reconcile = load_lake(lake, warehouse, full=True)
    assert (rerun.files_loaded, rerun.files_skipped, reconcile.files_loaded, reconcile.rows_loaded) == (0, 4, 0, 0)
    rows = snowflake_rows(warehouse)
    assert len(rows) == len(set(rows)) == 2000
    assert set(rows) == lake_rows(lake)
    assert ledger_entries(warehouse.execute) == loaded


def test_a_file_the_load_history_names_but_the_ledger_does_not_is_loaded(warehouse, lake):
    """The load history is no judge either way. Past 64 days Snowflake skips a file it is unsure of
    (LOAD_UNCERTAIN_FILES = FALSE); here its history names a file whose rows raw.trades does not hold
    (copied by hand, then deleted), and the load, by the ledger, copies it."""
    (key,) = write_trades(lake, columns("BTCUSDT", 70_000, 7, START_US), "backfill", START_US)
    warehouse.execute(
        f"copy into raw.trades from @raw.lake files = ('{key}') file_format = (format_name = 'raw.lake_parquet') "
        "match_by_column_name = case_insensitive on_error = abort_statement"
    )
    warehouse.execute("delete from raw.trades")
    result = load_lake(lake, warehouse, full=True)
    assert (result.files_loaded, result.rows_loaded) == (1, 7)
    assert set(snowflake_rows(warehouse)) == lake_rows(lake)
    assert_ledger_is_the_lake(lake, ledger_entries(warehouse.execute))


@pytest.mark.parametrize("dies_at", ["update raw.trades", "insert into raw.load_ledger", "commit"])
def test_a_crash_between_copy_and_commit_leaves_neither_rows_nor_ledger_and_the_next_load_loads_once(
    warehouse, lake, dies_at
):
    fill_lake(lake, files=1)
    real = warehouse.connection
    warehouse.connection = DyingConnection(real, lambda sql: sql.lower().startswith(dies_at))
    with pytest.raises(Crash):
        load_lake(lake, warehouse)
    real.close()  # the dead client's session ends, its transaction uncommitted
    with SnowflakeWarehouse(file_errors=FAKESNOW_FILE_ERRORS) as after:
        assert after.execute("select count(*) from raw.trades") == [(0,)]
        assert ledger_entries(after.execute) == {}
        result = load_lake(lake, after)
        assert (result.files_loaded, result.rows_loaded) == (2, 1000)
        rows = snowflake_rows(after)
        assert len(rows) == len(set(rows)) == 1000
        assert set(rows) == lake_rows(lake)
        assert_ledger_is_the_lake(lake, ledger_entries(after.execute))


def test_a_copy_report_must_account_for_each_file_once_and_a_file_it_could_not_load_is_a_file_error():
    infos = [ObjectInfo("trades/symbol=A/x.parquet", 10, "a"), ObjectInfo("trades/symbol=B/x.parquet", 20, "b")]

    def reported(key: str, status: str = "LOADED", rows: int = 3) -> tuple:
        # COPY INTO's report names a file of an external stage by its whole URL.
        return (f"s3://bucket/lake/{key}", status, rows, rows, 1, 0, None, None, None, None)

    assert rows_per_file([reported(infos[0].key, rows=3), reported(infos[1].key, rows=4)], infos) == {
        infos[0].key: 3,
        infos[1].key: 4,
    }
    for report in (
        [reported(infos[0].key)],  # a file left out
        [reported(infos[0].key), reported(infos[0].key)],  # one twice, the other left out
        [reported(infos[0].key), reported("trades/symbol=C/x.parquet")],  # a file not given
        [reported(infos[0].key), reported(infos[1].key, "LOAD_SKIPPED", 0)],  # what FORCE rules out
    ):
        with pytest.raises(CopyReportError):
            rows_per_file(report, infos)
    with pytest.raises(ProgrammingError, match="LOAD_FAILED"):
        rows_per_file([reported(infos[0].key), reported(infos[1].key, "LOAD_FAILED", 0)], infos)


def test_the_ledger_has_duckdbs_columns(warehouse, tmp_path):
    query = (
        "select lower(column_name), is_nullable from information_schema.columns "
        "where lower(table_schema) = 'raw' and lower(table_name) = 'load_ledger' order by ordinal_position"
    )
    with DuckDBWarehouse(tmp_path / "w.duckdb") as duckdb_warehouse:
        assert warehouse.execute(query) == duckdb_warehouse.execute(query)


def test_every_commit_stamps_its_rows_and_ledger_rows_with_one_loaded_at_and_a_later_load_later(warehouse, lake):
    fill_lake(lake)
    load_lake(lake, warehouse)
    (first,) = set.union(*loaded_at_of_each_file(lake, warehouse.execute).values())
    assert first is not None
    assert first.utcoffset() is not None
    assert set(warehouse.execute("select distinct loaded_at from raw.load_ledger")) == {(first,)}
    later = write_trades(lake, columns("ETHUSDT", 80_000, 5, START_US + HOUR_US), "backfill", START_US)
    mark_written(lake, "repair-test", later)
    assert load_lake(lake, warehouse).rows_loaded == 5
    (second,) = loaded_at_of_each_file(lake, warehouse.execute)[later[0]]
    assert second > first
    assert warehouse.execute("select loaded_at from raw.load_ledger where file_key = %s", later) == [(second,)]
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
    assert list(statements) == [f"V{number:03}" for number in range(1, 15)]
    text = {version: "\n".join(parts).lower() for version, parts in statements.items()}
    assert not any("${" in body for body in text.values())
    assert f"create role if not exists {LOADER_ROLE}" in text["V001"]
    assert f"create role if not exists {READER_ROLE}" in text["V001"]
    assert "url = 's3://lake-bucket/' storage_integration = cryptoflow_lake" in text["V002"]
    grants = "\n".join(
        text[version] for version in ("V003", "V005", "V007", "V009", "V011", "V013", "V014")
    ).splitlines()
    # The loader copies through the stage and its format into raw, stamps loaded_at (an update),
    # reads and adds to the ledger, which it may not change (no update; delete only for the rows of
    # files a compacted file replaced, once they are gone: V014), and so the flag
    # that the ledger has adopted what loads before it copied;
    # the reader only reads: marts, and of raw the two health tables and the gap fills.
    for needed in (
        "on stage cryptoflow.raw.lake",
        "on file format cryptoflow.raw.lake_parquet",
        "schema cryptoflow.raw",
        "grant update on all tables in schema cryptoflow.raw",
        "grant update on future tables in schema cryptoflow.raw",
        "grant select, insert on table cryptoflow.raw.load_ledger",
        "revoke update, delete on table cryptoflow.raw.load_ledger",
        "grant delete on table cryptoflow.raw.load_ledger",
        "grant select, insert on table cryptoflow.raw.ledger_adopted",
        "revoke update, delete on table cryptoflow.raw.ledger_adopted",
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
        if re.search(r"^\s*(grant|revoke)\b", migration.path.read_text(), re.MULTILINE | re.IGNORECASE)
    }
    assert granting == {"V001", "V003", "V005", "V007", "V009", "V011", "V013", "V014"}
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
