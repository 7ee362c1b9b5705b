"""The dbt project on Snowflake (fakesnow, in-process): the same models and the same tests as on DuckDB.

A small lake, loaded by the project's Snowflake backend: BTCUSDT with empty minutes and a gap, and a
late batch loaded after the first build that fills one empty minute (so the empty minute after it
carries another close); ETHUSDT with a gap the repair ledger explains as exchange-side holes.
``dbt build`` runs every model and every test; after the late batch, the models are built again,
incrementally. The Snowflake marts then equal, row by row at every interval, a DuckDB build of the
same lake, and a full refresh; prices and volumes come back as exact decimals at the contract's scale.
The later builds leave the tests out (they ran on the first): the comparisons are stronger, and each
test costs a query through fakesnow.
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
from tests.support.candles import CANDLE_COLUMNS, INTERVALS, build, load, project_nodes, query
from tests.support.trades import START_US, columns
from tests.support.warehouse import FAKESNOW_FILE_ERRORS, write_window

pytestmark = pytest.mark.slow
MINUTE_US = 60_000_000
SECOND_US = 1_000_000
# BTCUSDT: minutes 0-1 (ids 1-90) and 5-6 (ids 200-289); 2 to 4 empty. ETHUSDT: ids 1-300 and 303-600,
# 301 and 302 being holes on record in the ledger.
STREAMED = (
    columns("BTCUSDT", 1, 90),
    columns("BTCUSDT", 200, 90, START_US + 5 * MINUTE_US),
    columns("ETHUSDT", 1, 300),
    columns("ETHUSDT", 303, 298, START_US + 302 * SECOND_US),
)
# The backfill, loaded after the first build: minute 3 (ids 91-140); minute 4 stays empty, carrying id 140's close.
LATE = columns("BTCUSDT", 91, 50, START_US + 3 * MINUTE_US)
SCALES = (8, 8, 8, 8, 8, 16, 8, 16)  # open, high, low, close, volume, quote_volume, taker_buy_volume, ...quote_volume

Marts = dict[str, list[tuple]]  # interval -> rows of CANDLE_COLUMNS (+ last_loaded_at on Snowflake), in key order


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
    select = "select {}, last_loaded_at from marts.candles_{} order by symbol, open_time"
    return {interval: warehouse.execute(select.format(CANDLE_COLUMNS, interval)) for interval in INTERVALS}


@pytest.fixture(scope="module")
def builds(tmp_path_factory, snowflake_session) -> SnowflakeBuilds:
    folder = tmp_path_factory.mktemp("snowflake")
    lake = open_lake(f"file://{folder / 'lake'}")
    for trades in STREAMED:
        write_trades(lake, trades, "stream", START_US)
    write_window(lake, "ETHUSDT", from_us(START_US), holes=(301, 302))  # complete: ETHUSDT covered to 11:00
    settings = load_settings({"WAREHOUSE": "snowflake", "DUCKDB_PATH": str(folder / "unused.duckdb")})
    target = folder / "dbt"
    with SnowflakeWarehouse(file_errors=FAKESNOW_FILE_ERRORS) as warehouse:
        warehouse.setup(lake.url, "cryptoflow_lake", account_level=False)
        load_lake(lake, warehouse, full=True)
        first = transform(settings, target_dir=target)
        before = _marts(warehouse)
        write_trades(lake, LATE, "backfill", START_US + HOUR_US)
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


def test_the_late_batch_changes_the_carried_close_of_an_empty_minute(builds):
    def minute(marts: Marts, number: int) -> tuple:
        key = ("BTCUSDT", from_us(START_US + number * MINUTE_US))
        (row,) = [row for row in marts["1m"] if row[:2] == key]
        return row

    before, after = minute(builds.before, 4), minute(builds.after, 4)
    assert before[11] == after[11] == 0  # trade_count: empty before and after
    assert before[6] == minute(builds.before, 1)[6]  # close: minute 1's, then minute 3's
    assert after[6] == minute(builds.after, 3)[6] != before[6]


def test_the_snowflake_marts_equal_a_duckdb_build_row_by_row(builds, duckdb_marts):
    for interval in INTERVALS:
        snowflake = [row[:-1] for row in builds.after[interval]]  # last_loaded_at: each warehouse's own load time
        assert snowflake == duckdb_marts[interval], interval
        assert len({row[:2] for row in snowflake}) == len(snowflake) > 0, interval


def test_the_incremental_marts_equal_a_full_refresh(builds):
    assert builds.after == builds.full


def test_prices_and_volumes_are_exact_decimals_at_the_contract_scale(builds):
    for interval in INTERVALS:
        for row in builds.after[interval]:
            values = row[3:11]
            assert all(isinstance(value, Decimal) for value in values), (interval, row)
            assert tuple(-value.as_tuple().exponent for value in values) == SCALES, (interval, row)
