"""dbt source freshness of raw.trades on a small DuckDB warehouse the project's loader filled.

The loader stamps loaded_at; a test moves it back (warn after 1 h, error after 6 h, _sources.yml)
and checks what ``source_freshness`` makes of it. One warehouse and one dbt target for the module,
so dbt parses the project once.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from include.config import load_settings
from include.lake.store import open_lake
from include.lake.trades import write_trades
from include.transform import TransformFailed, source_freshness
from tests.support.candles import load
from tests.support.trades import START_US, columns


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """(settings, dbt target folder, the loader's own loaded_at) of a warehouse loaded just now."""
    folder = tmp_path_factory.mktemp("freshness")
    lake = open_lake(f"file://{folder / 'lake'}")
    write_trades(lake, columns("BTCUSDT", 1, 20), "stream", START_US)
    path = folder / "warehouse.duckdb"
    load(lake, path)
    settings = load_settings({"DUCKDB_PATH": str(path), "WAREHOUSE": "duckdb"})
    with duckdb.connect(str(path), read_only=True) as connection:
        (stamp,) = connection.execute("select max(loaded_at) from raw.trades").fetchone()
    return settings, folder / "dbt", stamp


def _loaded_hours_ago(settings, stamp, hours: float):
    """Move every row's loaded_at to ``hours`` before the loader's own stamp; the new newest loaded_at."""
    loaded_at = stamp - timedelta(hours=hours)
    with duckdb.connect(str(settings.duckdb_path)) as connection:
        connection.execute("update raw.trades set loaded_at = ?", [loaded_at])
    return loaded_at


def test_a_warehouse_loaded_now_passes(warehouse):
    settings, target, stamp = warehouse
    _loaded_hours_ago(settings, stamp, 0)
    sources = source_freshness(settings, target)
    assert list(sources) == ["raw.trades"]
    assert sources["raw.trades"].status == "pass"
    assert sources["raw.trades"].max_loaded_at == stamp
    assert sources["raw.trades"].age_seconds < 3600


def test_loaded_two_hours_ago_warns(warehouse):
    settings, target, stamp = warehouse
    loaded_at = _loaded_hours_ago(settings, stamp, 2)
    sources = source_freshness(settings, target)
    assert sources["raw.trades"].status == "warn"
    assert sources["raw.trades"].max_loaded_at == loaded_at
    assert 2 * 3600 <= sources["raw.trades"].age_seconds < 6 * 3600


def test_loaded_seven_hours_ago_is_an_error_naming_raw_trades(warehouse):
    settings, target, stamp = warehouse
    loaded_at = _loaded_hours_ago(settings, stamp, 7)
    with pytest.raises(TransformFailed, match=r"raw\.trades is stale") as failed:
        source_freshness(settings, target)
    assert loaded_at.isoformat() in str(failed.value)


def test_a_warehouse_without_raw_trades_is_an_error_naming_it(warehouse):
    settings, target, _ = warehouse
    with duckdb.connect(str(settings.duckdb_path)) as connection:
        connection.execute("alter table raw.trades rename to trades_away")
    try:
        with pytest.raises(TransformFailed, match=r"raw\.trades: runtime error"):
            source_freshness(settings, target)
    finally:
        with duckdb.connect(str(settings.duckdb_path)) as connection:
            connection.execute("alter table raw.trades_away rename to trades")
