"""The dbt project on Snowflake (fakesnow, in-process): the same models and the same tests as on DuckDB.

A small lake, loaded by the project's Snowflake backend, with the status objects completeness reads:
BTCUSDT with empty minutes and a gap of ids, and a late batch loaded after the first build that closes
the gap (so the empty minutes around it become complete and flat); ETHUSDT with a gap the repair
ledger explains as exchange-side holes, and the ledger's anchors; SOLUSDT with a gap a live gap fill
explains as holes, and a start gap's anchor loaded with the late batch only (a load of a status
object). ``dbt build`` runs every model and every test; after the late batch, the models are built
again, incrementally. The Snowflake marts then equal, row by row at every interval, a DuckDB build of
the same lake, and a full refresh; prices and volumes come back as exact decimals at the contract's
scale. The later builds leave the tests out (they ran on the first): the comparisons are stronger,
and each test costs a query through fakesnow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import fakesnow
import pytest

from include.config import load_settings
from include.lake.store import ObjectStore, open_lake
from include.lake.trades import write_trades
from include.timeutil import HOUR_US, from_us
from include.transform import TransformResult, transform
from include.warehouse.load import load_lake
from include.warehouse.snowflake_backend import SnowflakeWarehouse
from tests.support.candles import CANDLE_COLUMNS, DECIMAL_FIELDS, INTERVALS, Candle, build, load, project_nodes, query
from tests.support.trades import START_US, columns
from tests.support.warehouse import FAKESNOW_FILE_ERRORS, write_gap_fill, write_window

pytestmark = pytest.mark.slow
MINUTE_US = 60_000_000
SECOND_US = 1_000_000
START = from_us(START_US)


def _within_minute_3(trades):
    """The same trades, every one in minute 3 (half a second apart)."""
    trades.trade_time_us[:] = START_US + 3 * MINUTE_US + (trades.trade_id - trades.trade_id[0]) * SECOND_US // 2
    return trades


# BTCUSDT: minutes 0-1 (ids 1-90) and 5-6 (ids 200-289); 2 to 4 empty. ETHUSDT: ids 1-300 and 303-600,
# 301 and 302 being holes on record in the ledger. SOLUSDT: ids 1-50 and 53-100, 51 and 52 holes on
# record in a gap fill.
STREAMED = (
    columns("BTCUSDT", 1, 90),
    columns("BTCUSDT", 200, 90, START_US + 5 * MINUTE_US),
    columns("ETHUSDT", 1, 300),
    columns("ETHUSDT", 303, 298, START_US + 302 * SECOND_US),
    columns("SOLUSDT", 1, 50),
    columns("SOLUSDT", 53, 48, START_US + 52 * SECOND_US),
)
# The backfill, loaded after the first build: ids 91-199, all in minute 3; minutes 2 and 4 stay empty.
LATE = _within_minute_3(columns("BTCUSDT", 91, 109, START_US + 3 * MINUTE_US))
SCALES = (8, 8, 8, 8, 8, 16, 8, 16)  # open, high, low, close, volume, quote_volume, taker_buy_volume, ...quote_volume

Marts = dict[str, list[tuple]]  # interval -> rows of CANDLE_COLUMNS, in key order


@dataclass
class SnowflakeBuilds:
    lake: ObjectStore
    folder: Path
    first: TransformResult
    incremental: TransformResult
    before: Marts  # after the first build
    after: Marts  # after the incremental build over the late batch
    full: Marts  # after a full refresh


@pytest.fixture(scope="module")
def snowflake_session() -> Iterator[None]:
    """fakesnow in-process, behind Airflow's SnowflakeHook (the loader) and dbt-snowflake (the profile)."""
    connection = {"conn_type": "snowflake", "login": "loader", "password": "not-a-secret"}
    connection["extra"] = {"account": "cryptoflow", "database": "cryptoflow", "warehouse": "cryptoflow_wh"}
    with pytest.MonkeyPatch.context() as monkeypatch, fakesnow.patch():
        monkeypatch.setenv("AIRFLOW_CONN_SNOWFLAKE_DEFAULT", json.dumps(connection))
        for name, value in (("ACCOUNT", "cryptoflow"), ("USER", "loader"), ("PASSWORD", "not-a-secret")):
            monkeypatch.setenv(f"SNOWFLAKE_{name}", value)
        yield


@contextmanager
def _models_only() -> Iterator[tuple[str, ...]]:
    """The selection of the models alone: no test, not even a model's own (dbt's indirect selection)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("DBT_INDIRECT_SELECTION", "empty")
        yield ("resource_type:model",)


def _marts(warehouse: SnowflakeWarehouse) -> Marts:
    select = "select {} from marts.candles_{} order by symbol, open_time"
    return {interval: warehouse.execute(select.format(CANDLE_COLUMNS, interval)) for interval in INTERVALS}


@pytest.fixture(scope="module")
def builds(tmp_path_factory, snowflake_session) -> SnowflakeBuilds:
    folder = tmp_path_factory.mktemp("snowflake")
    lake = open_lake(f"file://{folder / 'lake'}")
    for trades in STREAMED:
        write_trades(lake, trades, "stream", START_US)
    # Complete: ETHUSDT covered to 11:00, every id of the hour known (id 601 the first at or after 11:00).
    write_window(lake, "ETHUSDT", START, filled=0, holes=(301, 302), ids=(1, 601))
    write_gap_fill(lake, "BTCUSDT", 1, 0, since=START)  # anchors: id 1 is the first trade at or after 10:00
    write_gap_fill(lake, "SOLUSDT", 51, 52, holes=(51, 52))
    settings = load_settings({"WAREHOUSE": "snowflake", "DUCKDB_PATH": str(folder / "unused.duckdb")})
    target = folder / "dbt"
    with SnowflakeWarehouse(file_errors=FAKESNOW_FILE_ERRORS) as warehouse:
        warehouse.setup(lake.url, "cryptoflow_lake", account_level=False)
        load_lake(lake, warehouse, full=True)
        first = transform(settings, target_dir=target)
        before = _marts(warehouse)
        write_trades(lake, LATE, "backfill", START_US + HOUR_US)
        write_gap_fill(lake, "SOLUSDT", 1, 0, since=START)  # a status object alone: SOLUSDT gains an anchor
        load_lake(lake, warehouse, full=True)
        with _models_only() as models:
            incremental = transform(settings, select=models, target_dir=target)
            after = _marts(warehouse)
            transform(settings, full_refresh=True, select=models, target_dir=target)
            full = _marts(warehouse)
    return SnowflakeBuilds(lake, folder, first, incremental, before, after, full)


@pytest.fixture(scope="module")
def duckdb_marts(builds) -> Marts:
    """The marts of a DuckDB build of the whole lake (late batch included), in the same rows."""
    path = builds.folder / "warehouse.duckdb"
    load(builds.lake, path)
    with _models_only() as models:
        build(path, builds.folder / "dbt-duckdb", select=models)
    select = "select {} from marts.candles_{} order by symbol, open_time"
    return {interval: query(path, select.format(CANDLE_COLUMNS, interval)) for interval in INTERVALS}


def test_every_model_and_test_runs_on_snowflake(builds):
    models, tests = project_nodes(builds.folder / "dbt-ls")
    assert builds.first.nodes == models + tests
    assert builds.incremental.nodes == models
    # The one warning: BTCUSDT's gap; ETHUSDT's is explained by the ledger's holes (a JSON list on Snowflake).
    assert len(builds.first.warnings) == 1, builds.first.warnings
    assert "trade_ids_contiguous" in builds.first.warnings[0]
    assert "Got 1 result," in builds.first.warnings[0]


def _candle(marts: Marts, symbol: str, number: int) -> Candle:
    key = (symbol, from_us(START_US + number * MINUTE_US))
    (row,) = [row for row in marts["1m"] if row[:2] == key]
    return Candle(*row)


def test_completeness_by_trade_id_on_snowflake(builds):
    before = [_candle(builds.before, "BTCUSDT", number) for number in range(6)]
    after = [_candle(builds.after, "BTCUSDT", number) for number in range(6)]
    # Ids 91-199 missing: minutes 1 to 5 not complete, the empty ones without a price. Then complete.
    assert [candle.is_complete for candle in before] == [True] + [False] * 5
    assert [before[number].open for number in (2, 3, 4)] == [None] * 3
    assert all(candle.is_complete for candle in after)
    assert (after[2].trade_count, after[2].open, after[2].close) == (0, after[1].close, after[1].close)
    assert (after[4].trade_count, after[4].open, after[4].close) == (0, after[3].close, after[3].close)
    assert (after[3].first_trade_id, after[3].last_trade_id, after[3].trade_count) == (91, 199, 109)
    # ETHUSDT: the ledger's holes; after its last trade (10:09:59), its window's end anchor (11:00).
    eth = [row for row in builds.after["1m"] if row[0] == "ETHUSDT"]
    assert len(eth) == 60
    assert all(Candle(*row).is_complete for row in eth)
    assert Candle(*eth[-1]).trade_count == 0
    # SOLUSDT: the gap fill's holes; its first minute complete once its anchor was loaded, alone.
    assert not _candle(builds.before, "SOLUSDT", 0).is_complete
    assert _candle(builds.after, "SOLUSDT", 0).is_complete


def test_the_snowflake_marts_equal_a_duckdb_build_row_by_row(builds, duckdb_marts):
    for interval in INTERVALS:
        # last_loaded_at (the last column): each warehouse's own load time
        snowflake = [row[:-1] for row in builds.after[interval]]
        assert snowflake == [row[:-1] for row in duckdb_marts[interval]], interval
        assert len({row[:2] for row in snowflake}) == len(snowflake) > 0, interval


def test_the_incremental_marts_equal_a_full_refresh(builds):
    assert builds.after == builds.full


def test_prices_and_volumes_are_exact_decimals_at_the_contract_scale(builds):
    for interval in INTERVALS:
        for row in builds.before[interval] + builds.after[interval]:
            candle = Candle(*row)
            values = [getattr(candle, name) for name in DECIMAL_FIELDS]
            if candle.open is None:  # an incomplete empty candle has no price; its volumes are still checked
                assert (candle.is_complete, candle.trade_count, values[:4]) == (False, 0, [None] * 4), row
            scaled = [(value, scale) for value, scale in zip(values, SCALES, strict=True) if value is not None]
            assert all(isinstance(value, Decimal) for value, _ in scaled), (interval, row)
            assert all(-value.as_tuple().exponent == scale for value, scale in scaled), (interval, row)
