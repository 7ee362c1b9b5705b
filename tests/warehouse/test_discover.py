"""A load lists only what the write markers announce since the last load; a reconcile lists all."""

from datetime import UTC, datetime, timedelta

import pytest

from include.lake.keys import marker_key
from include.lake.markers import MarkerWriter, WriteMarker, mark_written
from include.lake.store import LocalStore
from include.lake.trades import write_trades
from include.timeutil import HOUR_US
from include.warehouse.discover import discover, prune_stale_markers
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake
from tests.support.trades import START_US, columns


@pytest.fixture
def lake(tmp_path):
    return LocalStore(tmp_path / "lake")


def write(lake, symbol: str, first_id: int, hour: int, writer: MarkerWriter | None = None) -> list[str]:
    keys = write_trades(lake, columns(symbol, first_id, 5, START_US + hour * HOUR_US), "stream", START_US)
    if writer is not None:
        writer.mark(keys)
    return keys


def keys_of(found) -> list[str]:
    return sorted(info.key for info in found.files)


def test_first_discovery_lists_the_whole_lake_then_only_announced_partitions(lake):
    old = write(lake, "BTCUSDT", 1, 0) + write(lake, "ETHUSDT", 1, 0)
    first = discover(lake, cursor=None)
    assert first.partitions is None
    assert keys_of(first) == sorted(old)

    stream = MarkerWriter(lake, "stream-a")
    new = write(lake, "BTCUSDT", 100, 1, stream)
    second = discover(lake, first.cursor)
    assert keys_of(second) == new  # the old partition holds files too, but nothing new was announced there
    assert len(second.partitions) == 1
    assert keys_of(discover(lake, second.cursor)) == []


def test_writes_a_load_missed_are_all_found_through_the_markers(lake):
    cursor = discover(lake, cursor=None).cursor
    stream = MarkerWriter(lake, "stream-a")
    # Three flushes into two hours and a repair before the loader runs again.
    announced = write(lake, "BTCUSDT", 1, 0, stream) + write(lake, "BTCUSDT", 10, 0, stream)
    announced += write(lake, "BTCUSDT", 20, 1, stream)
    announced += write(lake, "ETHUSDT", 1, 5, MarkerWriter(lake, "repair-ETHUSDT-20261124T1500"))
    unannounced = write(lake, "ETHUSDT", 100, 7)  # a writer crashed before its marker
    found = discover(lake, cursor)
    assert keys_of(found) == sorted(announced)
    assert keys_of(discover(lake, found.cursor, full=True)) == sorted(announced + unannounced)


def test_a_write_during_a_load_is_found_by_the_next_one(lake):
    cursor = discover(lake, cursor=None).cursor
    stream = MarkerWriter(lake, "stream-a")
    first = write(lake, "BTCUSDT", 1, 0, stream)
    found = discover(lake, cursor)
    late = write(lake, "BTCUSDT", 10, 0, stream)  # after the listing, before the cursor is saved
    assert keys_of(found) == first
    assert keys_of(discover(lake, found.cursor)) == sorted(first + late)


def test_loads_through_the_cursor_load_every_announced_file_once(lake, tmp_path):
    stream = MarkerWriter(lake, "stream-a")
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        write(lake, "BTCUSDT", 1, 0, stream)
        assert load_lake(lake, warehouse).files_loaded == 1
        write(lake, "BTCUSDT", 10, 0, stream)
        write(lake, "BTCUSDT", 20, 1, stream)
        write(lake, "ETHUSDT", 1, 3)  # unannounced: waits for the reconcile
        result = load_lake(lake, warehouse)
        assert (result.files_loaded, result.files_listed, result.partitions_listed) == (2, 3, 2)
        assert load_lake(lake, warehouse).files_listed == 0
        reconcile = load_lake(lake, warehouse, full=True)
        assert (reconcile.files_loaded, reconcile.files_listed, reconcile.partitions_listed) == (1, 4, None)
        count = warehouse.connection.execute("select count(*), count(distinct trade_id || symbol) from raw.trades")
        assert count.fetchall() == [(20, 20)]


def test_a_reconcile_deletes_only_consumed_markers_silent_for_a_week(lake):
    now = datetime.now(UTC)
    for writer, age in (("repair-old", timedelta(days=8)), ("repair-recent", timedelta(days=6))):
        lake.put(marker_key(writer), WriteMarker(writer, (now - age).isoformat()).to_json())
    mark_written(lake, "stream-live", [])
    consumed = discover(lake, cursor=None).cursor
    lake.put(marker_key("repair-unread"), WriteMarker("repair-unread", (now - timedelta(days=9)).isoformat()).to_json())
    assert prune_stale_markers(lake, consumed, now) == [marker_key("repair-old")]
    remaining = sorted(info.key for info in lake.list("status/writes/"))
    assert remaining == [marker_key(w) for w in ("repair-recent", "repair-unread", "stream-live")]
