"""The candle marts against the sandbox's own klines, field by field, at every interval.

- A stream that loses messages and connections, loaded and transformed, then every hour window
  repaired, loaded and transformed again (incrementally). Before the repair, the minutes the stream's
  gaps touch are not complete; after it, every closed candle is, and equals the exchange's kline.
- A slow market imported only from history (a backfill of 49 hours, so every interval up to 1d has
  closed buckets, and many minutes have no trade: their ids around them are consecutive, so they are
  complete, and the carried close is checked against the exchange), with two exchange-side holes
  the repair finds and records in its ledger: the minutes around them are complete too.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest

from include.lake.store import open_lake
from include.lake.trades import trade_keys
from include.sandbox.faults import FaultSettings
from include.sandbox.server import serve_in_thread
from include.sandbox.symbols import spec_for
from include.sandbox.synthetic import SyntheticModel
from include.timeutil import from_us, now_us
from tests.support.candles import assert_closed_candles_are_klines, build, candles, load, project_nodes, query
from tests.support.exchange import import_history, sandbox_config, stream_for
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
SYMBOLS = ("BTCUSDT", "ETHUSDT")
HISTORY_SECONDS = 49 * 3600  # a full UTC day closed, whatever the time of day
SLOW_RATE = 0.02  # trades per second: most minutes have none


def _repair_everything(rest_url, lake, seconds):
    """Every window of the last ``seconds`` (and the hour before) checked and filled from REST."""
    end_us = now_us()
    import_history(rest_url, lake, SYMBOLS, end_us - (seconds + 3600) * 1_000_000, end_us)


@pytest.fixture(scope="module")
def streamed_then_repaired(tmp_path_factory):
    """(REST URL, warehouse, trades streamed per symbol, the build before the repair, the build after)."""
    folder = tmp_path_factory.mktemp("streamed")
    lake = open_lake(f"file://{folder / 'lake'}")
    path, target = folder / "warehouse.duckdb", folder / "dbt"
    faults = FaultSettings(skip_fraction=0.3, drop_connections_every=3.0)
    # 2 trades/s: the stream receives about 20 per symbol, so skipping 30% leaves a gap between them
    # (all but certainly), which the contiguity test must warn about before the repair.
    config = sandbox_config(symbols=SYMBOLS, rate=2.0, history_seconds=3 * 3600, faults=faults, weight_limit=10**6)
    with serve_in_thread(config) as sandbox:
        stream_for(lake, sandbox.ws_url, 10, symbols=SYMBOLS, before_stop=lambda _: _until_streamed(lake))
        load(lake, path)
        before = build(path, target)
        streamed = dict(query(path, "select symbol, count(*) from staging.stg_trades group by symbol"))
        _keep_a_copy_of_the_minutes(path, "before_repair")
        # After the stream stopped, so nothing it covered is left unrepaired.
        _repair_everything(sandbox.rest_url, lake, 3 * 3600)
        load(lake, path)
        after = build(path, target)
        yield sandbox.rest_url, path, streamed, before, after


def _holes_a_day_ago(config) -> frozenset[int]:
    """Two consecutive ids of BTCUSDT's synthetic market a day ago (its trades depend only on the seed,
    the symbol, the rate and the time), to be exchange-side holes."""
    model = SyntheticModel(spec_for("BTCUSDT"), config.rate, config.seed)
    first = model.first_id_at_or_after(now_us() - 24 * 3600 * 1_000_000)
    return frozenset({first, first + 1})


@pytest.fixture(scope="module")
def imported_history(tmp_path_factory):
    """(REST URL, warehouse, BTCUSDT's exchange-side holes) of a slow market imported only from REST history."""
    folder = tmp_path_factory.mktemp("history")
    lake = open_lake(f"file://{folder / 'lake'}")
    path = folder / "warehouse.duckdb"
    config = sandbox_config(symbols=SYMBOLS, rate=SLOW_RATE, history_seconds=HISTORY_SECONDS, weight_limit=10**6)
    holes = _holes_a_day_ago(config)
    with serve_in_thread(replace(config, holes={"BTCUSDT": holes})) as sandbox:
        _repair_everything(sandbox.rest_url, lake, HISTORY_SECONDS)
        load(lake, path)
        build(path, folder / "dbt")
        yield sandbox.rest_url, path, holes


def _keep_a_copy_of_the_minutes(path, schema: str) -> None:
    import duckdb

    with duckdb.connect(str(path)) as connection:
        connection.execute(f"create schema {schema}")
        connection.execute(f"create table {schema}.candles_1m as select * from marts.candles_1m")


def _until_streamed(lake):
    wait_until(lambda: all(trade_keys(lake, symbol) for symbol in SYMBOLS), 120, "a streamed file per symbol")


def test_streamed_then_repaired_candles_equal_the_exchange_klines(streamed_then_repaired):
    rest_url, path, streamed, _, _ = streamed_then_repaired
    assert all(streamed.get(symbol) for symbol in SYMBOLS), f"the stream delivered nothing: {streamed}"
    compared = assert_closed_candles_are_klines(path, rest_url, SYMBOLS, all_complete=True)
    assert all(compared[interval] > 0 for interval in ("1m", "5m", "15m", "1h")), compared


def test_before_the_repair_the_minutes_the_stream_gaps_touch_are_not_complete(streamed_then_repaired):
    """The build before the repair, kept in a copy of its marts: the stream skipped messages, so some of
    its minutes lack trades, and nothing tells what came before its first trade."""
    _, path, _, _, _ = streamed_then_repaired
    before = query(
        path,
        "select symbol, count(*), count(case when is_complete then 1 end) from before_repair.candles_1m "
        "group by symbol",
    )
    assert {symbol for symbol, _, _ in before} == set(SYMBOLS)
    for symbol, minutes, complete in before:
        assert complete < minutes, f"{symbol}: every minute complete before the repair"
    flat_over_a_gap = query(
        path,
        "select count(*) from before_repair.candles_1m where trade_count = 0 and open is not null and not is_complete",
    )
    assert flat_over_a_gap == [(0,)]


def test_the_contiguity_test_warns_on_stream_gaps_until_repaired(streamed_then_repaired):
    _, path, _, before, after = streamed_then_repaired
    models, tests = project_nodes(path.parent / "dbt-ls")
    assert after.nodes == models + tests  # every model and every test ran in the build, and passed
    assert any("trade_ids_contiguous" in warning for warning in before.warnings), before.warnings
    assert not any("trade_ids_contiguous" in warning for warning in after.warnings), after.warnings


def test_history_candles_equal_the_exchange_klines_empty_minutes_included(imported_history):
    rest_url, path, _ = imported_history
    compared = assert_closed_candles_are_klines(path, rest_url, SYMBOLS, all_complete=True)
    assert all(compared[interval] > 0 for interval in compared), compared
    empty = [row for row in candles(path, "1m").values() if row.is_closed and row.trade_count == 0]
    assert len(empty) > 100, "too few empty minutes compared: the carried close went untested"
    assert all(row.is_complete and row.volume == 0 and row.open == row.close for row in empty)


def test_an_empty_minute_is_complete_because_the_ids_around_it_are_consecutive(imported_history):
    _, path, holes = imported_history
    for symbol in SYMBOLS:
        minutes = sorted((key, row) for key, row in candles(path, "1m").items() if key[0] == symbol)
        traded = [row for _, row in minutes if row.trade_count > 0]
        # Between two minutes with trades, the ids go on from one to the next (but for the holes).
        steps = {after.first_trade_id - before.last_trade_id for before, after in pairwise(traded)}
        assert steps <= {1, 1 + len(holes)}, (symbol, steps)
    recorded = query(path, "select trade_id from staging.stg_trade_holes where symbol = 'BTCUSDT' order by 1")
    assert recorded == [(hole,) for hole in sorted(holes)], "the repair recorded the exchange-side holes in its ledger"
    around = [row for row in candles(path, "1m").values() if row.symbol == "BTCUSDT" and row.is_closed]
    assert all(row.is_complete for row in around), "a hole on record leaves its minutes complete"


def test_every_minute_from_the_first_trade_is_present(imported_history):
    _, path, _ = imported_history
    for symbol in SYMBOLS:
        first_trade = query(path, f"select min(trade_time) from staging.stg_trades where symbol = '{symbol}'")[0][0]
        opens = sorted(open_us for sym, open_us in candles(path, "1m") if sym == symbol)
        assert from_us(opens[0]) <= first_trade < from_us(opens[0] + 60_000_000)
        assert opens == list(range(opens[0], opens[-1] + 1, 60_000_000)), "a minute is missing"
        forming = [row for (sym, _), row in candles(path, "1m").items() if sym == symbol and not row.is_closed]
        assert len(forming) <= 1
