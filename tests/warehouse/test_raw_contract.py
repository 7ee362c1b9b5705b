"""Both warehouses' raw.trades is the lake's Parquet schema plus ``loaded_at``: same columns, same
order, matching types.

The lake's contract is ``TRADE_SCHEMA`` (include/lake/trades.py). Each Arrow type has exactly one
column type per warehouse that holds it without loss; a type with no entry here fails the test, so a
change to the contract cannot go unnoticed by either DDL. The warehouse adds one column of its own,
``loaded_at`` (when the row was loaded; dbt's staging is incremental on it).
"""

import re

import pyarrow as pa

from include.lake.trades import TRADE_SCHEMA
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.snowflake_backend import render_setup, setup_versions


def duckdb_type(arrow: pa.DataType) -> str:
    """The column type DuckDB's information_schema reports for a lossless column of ``arrow``."""
    if pa.types.is_decimal(arrow):
        return f"DECIMAL({arrow.precision},{arrow.scale})"
    if arrow == pa.timestamp("us", tz="UTC"):
        return "TIMESTAMP WITH TIME ZONE"  # an instant in µs, shown in the session's zone
    return {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN"}[arrow]


def snowflake_type(arrow: pa.DataType) -> str:
    """The Snowflake column type, as written in the setup SQL, for a lossless column of ``arrow``."""
    if pa.types.is_decimal(arrow):
        return f"number({arrow.precision},{arrow.scale})"
    if arrow == pa.timestamp("us", tz="UTC"):
        # Snowflake's default precision is 9 (ns), which holds every µs instant exactly. V002 was
        # applied as it stands, and a precision cannot be altered, so it stays (a new table would be V00x).
        return "timestamp_tz"
    return {pa.string(): "varchar", pa.int64(): "number(19,0)", pa.bool_(): "boolean"}[arrow]


LOADED_AT = pa.timestamp("us", tz="UTC")


def contract(to_type, loaded_at_nullable: bool) -> list[tuple[str, str, bool]]:
    lake = [(field.name, to_type(field.type), field.nullable) for field in TRADE_SCHEMA]
    return [*lake, ("loaded_at", to_type(LOADED_AT), loaded_at_nullable)]


def test_duckdb_raw_trades_is_the_parquet_contract(tmp_path):
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:  # every migration applied
        columns = warehouse.execute(
            "select column_name, data_type, is_nullable = 'YES' from information_schema.columns "
            "where table_schema = 'raw' and table_name = 'trades' order by ordinal_position"
        )
    assert columns == contract(duckdb_type, loaded_at_nullable=False)


def snowflake_trades_columns() -> list[tuple[str, str, bool]]:
    """raw.trades as the Snowflake setup SQL creates and alters it.

    Read from the DDL, not from fakesnow's information_schema: fakesnow drops a timestamp's precision.
    """
    statements = [
        statement
        for migration in setup_versions()
        for statement in render_setup(migration.path, "cryptoflow", "s3://lake", "cryptoflow_lake")
    ]
    (create,) = [s for s in statements if re.match(r"create table if not exists cryptoflow\.raw\.trades\b", s)]
    body = create[create.index("(") + 1 : create.rindex(")")]
    columns = [column(definition) for definition in re.split(r",\s*\n", body)]
    for statement in statements:
        if re.match(r"alter table \S*raw\.trades", statement):
            added = re.fullmatch(r"alter table \S+ add column if not exists (.+)", " ".join(statement.split()))
            assert added, f"read this alteration too: {statement}"
            columns.append(column(added[1]))
    return columns


def column(definition: str) -> tuple[str, str, bool]:
    """A column definition's name, type (without spaces) and whether it is nullable."""
    match = re.fullmatch(r"(\w+)\s+(.+?)(\s+not null)?", " ".join(definition.split()))
    assert match, definition
    return match[1], match[2].replace(" ", ""), match[3] is None


def test_snowflake_raw_trades_is_the_parquet_contract():
    # Nullable there: COPY ... MATCH_BY_COLUMN_NAME writes NULL into it, and the load stamps it next.
    assert snowflake_trades_columns() == contract(snowflake_type, loaded_at_nullable=True)
