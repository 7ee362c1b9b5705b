"""The DuckDB schema is versioned SQL applied by the migration runner: old files are brought up to date."""

import json
import shutil

import duckdb
import pytest

from include.lake.store import LocalStore
from include.warehouse.audit import ensure_audit_table
from include.warehouse.duckdb_backend import SETUP_DIR, DuckDBWarehouse
from include.warehouse.load import load_lake
from include.warehouse.migrations import applied_versions, migrate, versions
from include.warehouse.shared import DUCKDB
from tests.support.trades import fill_lake
from tests.support.warehouse import Crash, FaultyConnection, assert_exactly_the_lake

# What DuckDBWarehouse created before its schema was versioned: the warehouse files made then
# have these tables and no raw.schema_migrations. (Kept literally: it is history, not the schema.)
UNVERSIONED_SCHEMA = """
create schema if not exists raw;
create table if not exists raw.trades (
    exchange varchar not null, symbol varchar not null, trade_id bigint not null,
    price decimal(38, 8) not null, quantity decimal(38, 8) not null, quote_quantity decimal(38, 16) not null,
    trade_time timestamptz not null, is_buyer_maker boolean not null, source varchar not null,
    ingested_at timestamptz not null
);
create table if not exists raw.load_ledger (
    file_key varchar primary key, size bigint not null, etag varchar not null, row_count bigint not null,
    loaded_at timestamptz not null default now()
);
create table if not exists raw.load_refusals (
    file_key varchar not null, etag varchar not null, reason varchar not null,
    refused_at timestamptz not null default now(), primary key (file_key, etag)
);
create table if not exists raw.load_cursor (markers json not null, saved_at timestamptz not null default now());
"""
ALL_VERSIONS = [migration.version for migration in versions(SETUP_DIR)]


def cursor_type(connection) -> str:
    return connection.execute(
        "select data_type from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'load_cursor' and column_name = 'markers'"
    ).fetchone()[0]


def execute_on(connection):
    return lambda sql, params=None: connection.execute(sql, params).fetchall()


def unversioned_warehouse(path, lake) -> None:
    """A warehouse file as the code before the migration runner left it: one lake file loaded."""
    with duckdb.connect(str(path)) as connection:
        connection.execute(UNVERSIONED_SCHEMA)
        first = next(info for info in lake.list("trades/"))
        connection.execute(
            "create temp table incoming as select * from read_parquet(?, hive_partitioning = false)",
            [str(lake.root / first.key)],
        )
        connection.execute("insert into raw.trades by name select * from incoming")
        connection.execute(
            "insert into raw.load_ledger (file_key, size, etag, row_count) select ?, ?, ?, count(*) from incoming",
            [first.key, first.size, first.etag],
        )
        connection.execute(
            "insert into raw.load_cursor (markers) values (?)", [json.dumps({"status/writes/x.json": "e"})]
        )


def test_the_versions_are_numbered_in_order_from_v001():
    assert [f"V{n:03d}" for n in range(1, len(ALL_VERSIONS) + 1)] == ALL_VERSIONS
    assert len(ALL_VERSIONS) >= 2


def test_a_warehouse_made_before_versions_existed_is_migrated_and_keeps_what_it_loaded(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    fill_lake(lake, files=2)
    path = tmp_path / "old.duckdb"
    unversioned_warehouse(path, lake)
    with DuckDBWarehouse(path) as warehouse:
        assert sorted(applied_versions(warehouse.execute)) == ALL_VERSIONS
        assert cursor_type(warehouse.connection) == "VARCHAR"
        # The rows loaded before loaded_at existed carry the time of the migration that added it.
        assert warehouse.execute("select distinct loaded_at from raw.trades") == warehouse.execute(
            "select applied_at from raw.schema_migrations where version = 'V003'"
        )
        assert warehouse.read_cursor() == {"status/writes/x.json": "e"}
        result = load_lake(lake, warehouse, full=True)
        assert (result.files_loaded, result.files_skipped, result.rows_loaded) == (3, 1, 1500)
    assert_exactly_the_lake(lake, path)
    with DuckDBWarehouse(path) as warehouse:  # opening it again applies nothing twice
        versions_rows = warehouse.execute("select version from raw.schema_migrations order by version")
        assert [row[0] for row in versions_rows] == ALL_VERSIONS


def test_a_new_version_is_applied_once_to_an_existing_warehouse(tmp_path):
    folder = tmp_path / "setup"
    shutil.copytree(SETUP_DIR, folder)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as connection:
        execute = execute_on(connection)
        assert migrate(execute, DUCKDB, folder) == ALL_VERSIONS
        (folder / "V900__add_a_column.sql").write_text("alter table raw.load_ledger add column loader varchar;\n")
        assert migrate(execute, DUCKDB, folder) == ["V900"]
        assert migrate(execute, DUCKDB, folder) == []
        columns = [
            row[0]
            for row in execute("select column_name from information_schema.columns where table_name = 'load_ledger'")
        ]
        assert columns.count("loader") == 1


def test_a_crash_at_any_statement_of_a_migration_leaves_each_version_whole_or_absent(tmp_path):
    statements = []
    probe = tmp_path / "probe.duckdb"
    with duckdb.connect(str(probe)) as connection:
        connection.execute(UNVERSIONED_SCHEMA)
        recorder = FaultyConnection(connection)
        migrate(execute_on(recorder), DUCKDB, SETUP_DIR)
        statements = recorder.statements
    assert any("alter table raw.load_cursor" in sql for sql in statements)
    for n in range(1, len(statements) + 1):
        with duckdb.connect(str(tmp_path / f"crash-{n}.duckdb")) as connection:
            connection.execute(UNVERSIONED_SCHEMA)
            with pytest.raises(Crash):
                migrate(execute_on(FaultyConnection(connection, fail_at=n)), DUCKDB, SETUP_DIR)
            # V002 is recorded exactly when the cursor column was changed: never one without the other.
            recorded = (
                applied_versions(execute_on(connection))
                if connection.execute(
                    "select count(*) from information_schema.tables where table_name = 'schema_migrations'"
                ).fetchone()[0]
                else set()
            )
            assert ("V002" in recorded) == (cursor_type(connection) == "VARCHAR"), n
            assert migrate(execute_on(connection), DUCKDB, SETUP_DIR) == [v for v in ALL_VERSIONS if v not in recorded]
            assert sorted(applied_versions(execute_on(connection))) == ALL_VERSIONS
            assert cursor_type(connection) == "VARCHAR"


def test_marts_built_before_completeness_are_dropped_and_the_audit_kept(tmp_path):
    """V006: the candle marts gained columns their incremental builds read back; the marts of an older
    warehouse are dropped (the next dbt build builds them whole from raw), the audit's record stays."""
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as connection:
        execute = execute_on(connection)
        assert migrate(execute, DUCKDB, SETUP_DIR, skip={"V006"}) == [v for v in ALL_VERSIONS if v != "V006"]
        execute("create schema marts")
        for interval in ("1m", "5m", "15m", "1h", "4h", "1d"):
            execute(f"create table marts.candles_{interval} (symbol varchar, open_time timestamptz, is_closed boolean)")
        ensure_audit_table(execute, DUCKDB)
        execute("insert into marts.candle_audit values ('BTCUSDT', '1m', now(), 'match', '', now())")
    with DuckDBWarehouse(path) as warehouse:
        assert "V006" in applied_versions(warehouse.execute)
        tables = warehouse.execute("select table_name from duckdb_tables() where schema_name = 'marts'")
        assert tables == [("candle_audit",)]
        assert warehouse.execute("select count(*) from marts.candle_audit") == [(1,)]
        columns = warehouse.execute(
            "select column_name from duckdb_columns() where schema_name = 'raw' and table_name = 'completeness'"
        )
        assert [name for (name,) in columns][-2:] == ["first_id", "end_id"]
