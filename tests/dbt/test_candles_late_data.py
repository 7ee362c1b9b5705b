"""Late and repeated trades: a backfill loaded after the marts were built changes exactly the candles
it touches (and the empty ones around it, whose completeness and carried close change), a trade loaded
again changes nothing, and the incremental result equals a full refresh. A corrupted candle fails the
build's tests.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from include.lake.store import open_lake
from include.lake.trades import TradeColumns, write_trades
from include.transform import TransformFailed
from tests.support.candles import INTERVALS, build, candles, load, query
from tests.support.trades import START_US, columns

pytestmark = pytest.mark.slow
MINUTE_US = 60_000_000


def _trades(ids: list[int], minutes_and_seconds: list[tuple[int, float]], prices: list[int]) -> TradeColumns:
    times = [START_US + minute * MINUTE_US + int(seconds * 1_000_000) for minute, seconds in minutes_and_seconds]
    return TradeColumns(
        "BTCUSDT",
        np.array(ids, dtype=np.int64),
        np.array(prices, dtype=np.int64) * 1_000_000,  # in 1e-8 units: 100.xx
        np.array([12_345_678] * len(ids), dtype=np.int64),
        np.array(times, dtype=np.int64),
        np.array([i % 2 == 0 for i in ids]),
    )


# Minutes 0, 1 and 6 have trades, 2 to 5 are empty; ids 4 to 6 are missing from the stream, so minutes
# 1 to 6 are not complete (and 2 to 5 have no price) until the backfill. Nothing tells what came before
# id 1: minute 0 is never complete.
STREAMED = _trades([1, 2, 3, 7, 8], [(0, 10), (0, 20), (1, 5), (6, 1), (6, 2)], [10_000, 10_100, 10_050, 9_900, 9_950])
# The backfill: ids 4 and 5 in minute 3, id 6 in minute 6 before id 7 (minute 6 gets a new open),
# and id 7 again (a trade the stream already delivered).
LATE = _trades([4, 5, 6, 7], [(3, 1), (3, 30), (6, 0.5), (6, 1)], [11_000, 8_000, 10_500, 9_900])


def _offset(interval_seconds: int) -> int:
    """Minutes from START_US back to the start of its UTC bucket of that width."""
    return -(START_US % (interval_seconds * 1_000_000)) // MINUTE_US


def _snapshot(path):
    return {interval: candles(path, interval) for interval in INTERVALS}


def _changed(before, after):
    return {
        interval: sorted(
            (open_us - START_US) // MINUTE_US
            for (symbol, open_us), row in after[interval].items()
            if before[interval].get((symbol, open_us)) != row
        )
        for interval in INTERVALS
    }


@pytest.fixture(scope="module")
def late(tmp_path_factory):
    folder = tmp_path_factory.mktemp("late")
    lake = open_lake(f"file://{folder / 'lake'}")
    path = folder / "warehouse.duckdb"
    write_trades(lake, STREAMED, "stream", START_US)
    write_trades(lake, columns("ETHUSDT", 1, 600), "stream", START_US)  # another symbol, untouched by the backfill
    load(lake, path)
    build(path, folder / "dbt")
    before = _snapshot(path)
    write_trades(lake, LATE, "backfill", START_US + 3600 * 1_000_000)
    load(lake, path)
    build(path, folder / "dbt")
    return folder, path, before, _snapshot(path)


def test_a_late_batch_changes_exactly_the_affected_candles(late):
    _, _, before, after = late
    # 1m: minute 1 (complete now: the first trade after it is known), 2 (complete: empty and flat at
    # id 3's price), 3 (its trades), 4 and 5 (complete, flat at id 5's price), 6 (its first trade by id);
    # minute 0 unchanged. 5m: [0, 5) and [5, 10); the larger intervals: their one bucket. ETHUSDT: nothing.
    assert _changed(before, after) == {
        "1m": [1, 2, 3, 4, 5, 6],
        "5m": [0, 5],
        "15m": [0],
        "1h": [0],
        "4h": [_offset(14_400)],
        "1d": [_offset(86_400)],
    }
    minute = {number: after["1m"][("BTCUSDT", START_US + number * MINUTE_US)] for number in range(7)}
    gap = [before["1m"][("BTCUSDT", START_US + number * MINUTE_US)] for number in range(1, 7)]
    assert not any(candle.is_complete for candle in gap), "ids 4 to 6 were missing"
    assert all(candle.open is None for candle in gap[1:5]), "the empty minutes of a gap have no price"
    assert [minute[number].is_complete for number in range(7)] == [False] + [True] * 6
    assert minute[4][3:7] == (minute[4].close,) * 4 == (minute[3].close,) * 4
    assert minute[6].open == 105  # id 6's price opens minute 6
    assert after["5m"][("BTCUSDT", START_US)].open == 100  # a 5m open is its first trade, not a carried close


def test_each_trade_is_staged_once_across_incremental_runs(late):
    _, path, _, _ = late
    assert query(path, "select count(*), count(distinct trade_id) from raw.trades where symbol = 'BTCUSDT'") == [(9, 8)]
    staged = query(path, "select trade_id from staging.stg_trades where symbol = 'BTCUSDT' order by trade_id")
    assert staged == [(trade_id,) for trade_id in range(1, 9)]


def test_the_incremental_result_equals_a_full_refresh(late):
    folder, path, _, after = late
    copy = folder / "full.duckdb"
    shutil.copyfile(path, copy)
    build(copy, folder / "dbt-full", full_refresh=True)
    assert _snapshot(copy) == after
    # Every column but built_at (when each build ran: the only one that must differ).
    every_column = "select * exclude (built_at) from marts.candles_{} order by symbol, open_time"
    for interval in INTERVALS:
        assert query(copy, every_column.format(interval)) == query(path, every_column.format(interval))


@pytest.mark.parametrize(
    ("corruption", "failing_test"),
    [
        ("low = open + 1", "candle_invariants_candles_1m"),
        ("high = least(open, close) - 1", "candle_invariants_candles_1m"),
        ("quote_volume = -1", "candle_invariants_candles_1m"),
        ("taker_buy_volume = volume + 1", "candle_invariants_candles_1m"),
        ("trade_count = 0", "candle_invariants_candles_1m"),
        ("volume = null", "not_null_columns_candles_1m"),
        ("symbol = null", "not_null_columns_candles_1m"),
        ("is_complete = null", "not_null_columns_candles_1m"),
        ("open = null", "candle_invariants_candles_1m"),
        ("first_trade_id = null", "candle_invariants_candles_1m"),
        ("last_trade_id = first_trade_id", "candle_invariants_candles_1m"),
    ],
    ids=[
        "low-above-open",
        "high-below-close",
        "negative-volume",
        "taker-above-volume",
        "count-0-volume-not",
        "null-volume",
        "null-key",
        "null-completeness",
        "null-price-with-trades",
        "null-trade-id-with-trades",
        "more-trades-than-ids",
    ],
)
def test_a_corrupted_candle_fails_the_invariant_test(late, corruption, failing_test):
    folder, path, _, _ = late
    copy = folder / f"corrupted-{failing_test}.duckdb"
    shutil.copyfile(path, copy)
    import duckdb

    with duckdb.connect(str(copy)) as connection:  # minute 0 is before the recomputed tail: it stays as it is
        connection.execute(f"update marts.candles_1m set {corruption} where open_time = make_timestamptz({START_US})")
    with pytest.raises(TransformFailed, match=failing_test):
        build(copy, folder / "dbt-corrupted", select=("candles_1m",))
