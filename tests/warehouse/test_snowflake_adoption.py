"""Snowflake through fakesnow: a warehouse loaded before the load ledger (setup V010) is upgraded without
a row loaded twice. Its first load lists the whole lake and enters every file in the ledger, keeping
only the trade ids raw.trades lacks; then the ledger alone decides, as on a warehouse that always had it."""

import itertools

import pytest

from include.lake.compaction import ExpectedIds, compact_hour
from include.lake.markers import mark_written
from include.lake.trades import write_trades
from include.timeutil import HOUR_US
from include.warehouse import snowflake_backend
from include.warehouse.load import load_lake
from include.warehouse.snowflake_backend import SnowflakeWarehouse
from tests.support.trades import START_US, columns, fill_lake, lake_rows
from tests.support.warehouse import (
    FAKESNOW_FILE_ERRORS,
    Crash,
    DyingConnection,
    as_loaded_before_the_ledger,
    assert_ledger_is_the_lake,
    forget_load_history,
    ledger_entries,
)

TRADE_COLUMNS = "symbol, trade_id, price, quantity, quote_quantity, trade_time, is_buyer_maker, source"


@pytest.fixture
def warehouse(snowflake_warehouse):
    return snowflake_warehouse


def assert_exactly_the_lake(lake, warehouse) -> None:
    """raw.trades holds every lake row once, and the ledger names every lake file with its rows."""
    rows = warehouse.execute(f"select {TRADE_COLUMNS} from raw.trades")
    assert len(rows) == len(set(rows)), "a row was loaded twice"
    assert set(rows) == lake_rows(lake)
    assert_ledger_is_the_lake(lake, ledger_entries(warehouse.execute))


def loaded_by_the_old_code(lake, warehouse) -> None:
    """Four files (2,000 trades) loaded, then the warehouse as the code before the ledger leaves it, upgraded."""
    fill_lake(lake, files=2)
    assert load_lake(lake, warehouse).rows_loaded == 2000
    assert as_loaded_before_the_ledger(warehouse, lake.url) == ["V010", "V012"]
    assert warehouse.execute("select count(*) from raw.trades") == [(2000,)]
    assert ledger_entries(warehouse.execute) == {}


def announce_new_trades(lake, first_id: int = 70_000) -> None:
    """A file no load has seen: 7 trades, announced by its writer's marker."""
    keys = write_trades(lake, columns("BTCUSDT", first_id, 7, START_US + HOUR_US), "backfill", START_US)
    mark_written(lake, "repair-BTCUSDT-test", keys)


@pytest.mark.parametrize("before", ["as_loaded", "history_forgotten", "rows_unstamped", "hour_compacted"])
def test_a_warehouse_loaded_before_the_ledger_adopts_every_file_and_loads_only_what_it_lacked(warehouse, lake, before):
    loaded_by_the_old_code(lake, warehouse)
    if before == "history_forgotten":
        # 64 days on Snowflake is unsure of every file (fakesnow, which knows no "uncertain", would load them).
        assert forget_load_history(warehouse.execute) == 4
    if before == "rows_unstamped":
        # The old code stamped loaded_at after its COPY had committed; it died in between.
        warehouse.execute("update raw.trades set loaded_at = null where symbol = 'BTCUSDT'")
    if before == "hour_compacted":
        # The repair compacted an hour the old code had loaded from its small files.
        assert compact_hour(lake, "BTCUSDT", START_US, ExpectedIds(1, 1001)).compacted_key is not None
    announce_new_trades(lake)
    assert warehouse.adopting()

    adopted = load_lake(lake, warehouse)  # an incremental run: while adopting, the whole lake is listed

    assert (adopted.partitions_listed, adopted.rows_loaded, adopted.refused) == (None, 7, [])
    assert_exactly_the_lake(lake, warehouse)
    assert warehouse.execute("select count(*) from raw.trades where loaded_at is null") == [(0,)]
    assert not warehouse.adopting()
    # Then the ledger alone decides: the nightly reconcile copies nothing, and loads are incremental again.
    reconcile = load_lake(lake, warehouse, full=True)
    assert (reconcile.files_loaded, reconcile.rows_loaded) == (0, 0)
    announce_new_trades(lake, 80_000)
    incremental = load_lake(lake, warehouse)
    assert (incremental.partitions_listed, incremental.files_loaded, incremental.rows_loaded) == (1, 1, 7)
    assert_exactly_the_lake(lake, warehouse)


def test_the_reconcile_adopts_as_well(warehouse, lake):
    loaded_by_the_old_code(lake, warehouse)
    announce_new_trades(lake)
    adopted = load_lake(lake, warehouse, full=True)
    assert (adopted.files_loaded, adopted.rows_loaded) == (5, 7)
    assert_exactly_the_lake(lake, warehouse)
    assert not warehouse.adopting()


def dies_at_the_second_ledger_insert():
    inserts = itertools.count(1)
    return lambda sql: sql.lower().startswith("insert into raw.load_ledger") and next(inserts) == 2


def dies_at_the_flag():
    return lambda sql: sql.lower().startswith("insert into raw.ledger_adopted")


@pytest.mark.parametrize("dies_at", [dies_at_the_second_ledger_insert, dies_at_the_flag])
def test_a_crash_during_adoption_leaves_it_to_the_next_load_which_loads_no_row_twice(
    warehouse, lake, monkeypatch, dies_at
):
    loaded_by_the_old_code(lake, warehouse)
    announce_new_trades(lake)
    monkeypatch.setattr(snowflake_backend, "FILES_PER_COPY", 2)  # the four old files in two COPYs
    real = warehouse.connection
    warehouse.connection = DyingConnection(real, dies_at())
    with pytest.raises(Crash):
        load_lake(lake, warehouse)
    real.close()  # the dead client's session ends, its transaction uncommitted
    with SnowflakeWarehouse(file_errors=FAKESNOW_FILE_ERRORS) as after:
        assert after.adopting()
        result = load_lake(lake, after)
        assert (result.partitions_listed, result.refused) == (None, [])
        assert_exactly_the_lake(lake, after)
        assert not after.adopting()
        assert load_lake(lake, after, full=True).rows_loaded == 0


@pytest.mark.parametrize("upgraded", [False, True])
def test_a_warehouse_without_trades_has_nothing_to_adopt(warehouse, lake, upgraded):
    if upgraded:  # set up before the ledger, never loaded, then upgraded
        assert as_loaded_before_the_ledger(warehouse, lake.url) == ["V010", "V012"]
    assert not warehouse.adopting()
    fill_lake(lake, files=2)
    assert load_lake(lake, warehouse).rows_loaded == 2000
    announce_new_trades(lake)
    incremental = load_lake(lake, warehouse)
    assert (incremental.partitions_listed, incremental.rows_loaded) == (1, 7)
    assert_exactly_the_lake(lake, warehouse)
