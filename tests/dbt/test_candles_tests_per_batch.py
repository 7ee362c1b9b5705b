"""The marts' tests, split by what they read (models/marts/_marts.yml): after each micro-batch, the
rows the build rewrote (those with the mart's newest built_at), the keys among them against the whole
mart; on the nightly reconcile, every row (tagged nightly). So a per-batch build costs what it rebuilt,
not the history, and nothing is checked less overall:

- a broken candle among the rows a build rewrites fails that build;
- a copy of a rebuilt row's key that the build left in place fails the per-batch tests, though the
  copy itself is older;
- a candle gone bad outside a build (in a bucket no build recomputes) passes the per-batch build,
  which does not read it, and fails the nightly tests.
"""

from __future__ import annotations

import shutil

import duckdb
import pytest

from include.lake.store import open_lake
from include.lake.trades import write_trades
from include.transform import TransformFailed
from tests.support.candles import build, load, query, run_tests
from tests.support.trades import START_US, columns

pytestmark = pytest.mark.slow
MINUTE_US = 60_000_000
DAY_US = 1440 * MINUTE_US
REBUILT = "candles_1m_.*rebuilt: fail"  # a per-batch test of candles_1m failed (its name ends in its scope)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A warehouse after a full build of ten minutes of trades a day ago and ten minutes from START_US
    (a trade a second; ids consecutive, so the day between is complete and empty), then a per-batch
    build of 30 s more: no bucket of the day before is recomputed, of any interval."""
    folder = tmp_path_factory.mktemp("per-batch")
    lake = open_lake(f"file://{folder / 'lake'}")
    path = folder / "warehouse.duckdb"
    write_trades(lake, columns("BTCUSDT", 1, 600, START_US - DAY_US), "stream", START_US)
    write_trades(lake, columns("BTCUSDT", 601, 600), "stream", START_US)
    load(lake, path)
    build(path, folder / "dbt")
    write_trades(lake, columns("BTCUSDT", 1201, 30, START_US + 600 * 1_000_000), "stream", START_US)
    load(lake, path)
    build(path, folder / "dbt", per_batch=True)
    return folder, path


def _copy(built, name: str):
    folder, path = built
    copy = folder / f"{name}.duckdb"
    shutil.copyfile(path, copy)
    return copy


def _rebuilt_minutes(path) -> list[int]:
    newest = "select max(built_at) from marts.candles_1m"
    rows = query(path, f"select epoch_us(open_time) from marts.candles_1m where built_at = ({newest}) order by 1")
    return [(open_us - START_US) // MINUTE_US for (open_us,) in rows]


def test_the_per_batch_build_rewrote_the_last_minutes_only(built):
    _, path = built
    assert _rebuilt_minutes(path) == [9, 10]  # the kept tail and the new minute: the rest is history


def test_a_broken_candle_among_the_rebuilt_rows_fails_the_per_batch_build(built):
    folder, _ = built
    copy = _copy(built, "broken-trade")
    with duckdb.connect(str(copy)) as connection:  # a trade no validation stopped: a sale of -1000
        connection.execute(
            "insert into raw.trades by name select * replace (trade_id + 1 as trade_id, -1000 as quantity,"
            " -1000 * price as quote_quantity, trade_time + interval 1 second as trade_time, now() as loaded_at)"
            " from raw.trades order by trade_id desc limit 1"
        )
    with pytest.raises(TransformFailed, match=f"candle_invariants_{REBUILT}"):
        build(copy, folder / "dbt", per_batch=True)


def test_an_older_copy_of_a_rebuilt_key_fails_the_per_batch_tests(built):
    folder, _ = built
    copy = _copy(built, "duplicate")
    with duckdb.connect(str(copy)) as connection:  # the copy is not a rebuilt row: its built_at is older
        connection.execute(
            "insert into marts.candles_1m select * replace (built_at - interval 1 hour as built_at)"
            " from marts.candles_1m where open_time = make_timestamptz(?)",
            [START_US + 10 * MINUTE_US],
        )
    with pytest.raises(TransformFailed, match=f"unique_combination_of_columns_{REBUILT}"):
        run_tests(copy, folder / "dbt", nightly=False)


def test_a_candle_gone_bad_outside_a_build_fails_the_nightly_tests_only(built):
    folder, _ = built
    copy = _copy(built, "old-candle")
    with duckdb.connect(str(copy)) as connection:
        connection.execute(
            "update marts.candles_1m set low = high + 1 where open_time = make_timestamptz(?)", [START_US - DAY_US]
        )
    build(copy, folder / "dbt", per_batch=True)  # recomputes the tail, tests what it rewrote: passes
    assert min(_rebuilt_minutes(copy)) >= 0
    with pytest.raises(TransformFailed, match="candle_invariants_candles_1m_: fail"):
        run_tests(copy, folder / "dbt", nightly=True)
