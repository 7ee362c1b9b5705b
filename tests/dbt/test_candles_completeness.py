"""Completeness by trade id in the candle marts (docs/architecture.md, "The live edge", part 1), on
hand-made lake files where each id, time and status object is chosen:

- the ids decide emptiness: a minute without a trade between consecutive ids is complete and flat at
  the previous close; a minute inside a gap (ids missing from the lake) has no price and is not
  complete, and the minutes with trades the gap touches are not complete either;
- exchange-side holes leave a bucket complete, whether the repair's ledger recorded them
  (raw.completeness.holes) or a live gap fill did (raw.gap_fills.holes); an anchor (a gap fill's
  ``since``) makes the first bucket complete;
- the larger intervals are complete when every minute of them so far is;
- quote sums are exact to 16 decimals;
- incremental builds equal a full refresh after a load of status objects only (holes, anchors), after
  a load of heartbeats only (the recomputed range then starts on an empty bucket: the close carried
  into it comes from the kept bucket before it), and after a backfill that closes a span reaching
  back several buckets.

Three loads and builds: the trades and some status objects; then only status objects and a heartbeat;
then a backfill. After the second and the third, a copy of the warehouse is built with a full refresh.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from include.decimals import to_units
from include.lake.heartbeats import write_heartbeat
from include.lake.store import ObjectStore, open_lake
from include.lake.trades import TradeColumns, write_trades
from include.timeutil import from_us, to_us
from tests.support.candles import INTERVALS, Candle, build, candles, load, query
from tests.support.trades import START_US
from tests.support.warehouse import write_gap_fill, write_window

pytestmark = pytest.mark.slow
MINUTE_US = 60_000_000
START = from_us(START_US)  # 2026-11-24T10:00:00Z: a whole hour (the 4h and 1d buckets began earlier)
QUANTITY = "0.50000000"

# (id, minute, second, price); every trade of a symbol in one list, in id order.
BTC = [(1, 0, 10, "100"), (2, 0, 20, "101"), (3, 2, 5, "102"), (4, 3, 1, "103"), (5, 3, 30, "104")]
ETH_STREAMED = [(1, 0, 10, "200"), (2, 0, 40, "201"), (8, 4, 10, "205"), (9, 4, 20, "206"), (10, 5, 5, "207")]
ETH_BACKFILL = [(3, 3, 5, "202"), (4, 3, 10, "203"), (5, 3, 15, "204"), (6, 3, 20, "203.5"), (7, 3, 25, "204.5")]
SOL = [(1, 0, 10, "30"), (2, 0, 20, "31"), (5, 2, 10, "32"), (6, 3, 30, "33"), (7, 5, 10, "34")]  # 3, 4: holes
XRP = [(1, 0, 10, "0.5"), (2, 0, 20, "0.51"), (5, 2, 10, "0.52"), (6, 3, 30, "0.53")]  # 3, 4: holes
ADA = [(1, 0, 10, "0.3"), (2, 1, 10, "0.301"), (3, 1, 50, "0.309")]  # minute 1 opens 0.301, closes 0.309
DOGE = [(1, 0, 10, "0.1"), (2, 12, 10, "0.2")]  # minutes 1 to 11 without a trade, ids consecutive
LTC = [(1, 0, 10, "50"), (2, 0, 20, "51"), (5, 3, 10, "55")]  # ids 3, 4 missing; 5 the first at or after 10:01:30
TRX = [(1, 0, 10, "0.2"), (2, 0, 20, "0.21"), (4, 3, 10, "0.23")]  # id 3: the first trade at or after 10:02
# Prices and quantities whose products need all 16 decimals.
XLM = [
    (1, 0, 10, "0.12345679", "0.98765432"),
    (2, 0, 20, "0.12345678", "0.87654321"),
    (3, 1, 5, "9.87654321", "0.10000003"),
]


def _trades(symbol: str, rows: list[tuple]) -> TradeColumns:
    return TradeColumns(
        symbol,
        np.array([row[0] for row in rows], dtype=np.int64),
        np.array([to_units(row[3]) for row in rows], dtype=np.int64),
        np.array([to_units(row[4] if len(row) > 4 else QUANTITY) for row in rows], dtype=np.int64),
        np.array([START_US + row[1] * MINUTE_US + row[2] * 1_000_000 for row in rows], dtype=np.int64),
        np.array([row[0] % 2 == 0 for row in rows]),  # odd ids: the taker bought
    )


def _minute(number: int):
    return START + timedelta(minutes=number)


def _heartbeat(lake: ObjectStore, symbol: str, updated_at_us: int, last: tuple[int, int]) -> None:
    """A stream heartbeat as the batcher writes it, at a chosen time (the batcher stamps the clock's)."""
    status = {"last_trade_id": last[0], "last_trade_time": from_us(last[1]).isoformat(), "lag_seconds": 0.5}
    write_heartbeat(lake, f"stream-{symbol}", from_us(updated_at_us), {}, {symbol: status | {"connection": None}})


Marts = dict[str, dict[tuple[str, int], Candle]]


@dataclass
class Phases:
    first: Marts  # trades and some status objects
    statuses: Marts  # then status objects and a heartbeat only, incrementally
    statuses_full: Marts  # the same warehouse refreshed in full
    backfill: Marts  # then a backfill, incrementally
    backfill_full: Marts
    built_at: dict[str, dict[tuple[str, int], object]]  # 1m built_at after the first and the second build
    folder: Path


def _marts(path: Path) -> Marts:
    return {interval: candles(path, interval) for interval in INTERVALS}


def _built_at(path: Path) -> dict[tuple[str, int], object]:
    rows = query(path, "select symbol, open_time, built_at from marts.candles_1m")
    return {(symbol, to_us(open_time)): built for symbol, open_time, built in rows}


def _full_refresh(path: Path, folder: Path, name: str) -> Marts:
    copy = folder / f"{name}.duckdb"
    shutil.copyfile(path, copy)
    build(copy, folder / f"dbt-{name}", full_refresh=True)
    return _marts(copy)


def _first_load(lake: ObjectStore) -> None:
    for symbol, rows in (("BTCUSDT", BTC), ("ETHUSDT", ETH_STREAMED), ("SOLUSDT", SOL), ("XRPUSDT", XRP)):
        write_trades(lake, _trades(symbol, rows), "stream", START_US)
    for symbol, rows in (("ADAUSDT", ADA), ("DOGEUSDT", DOGE), ("XLMUSDT", XLM), ("TRXUSDT", TRX), ("LTCUSDT", LTC)):
        write_trades(lake, _trades(symbol, rows), "backfill", START_US)
    # Anchors at 10:00 (the first trade at or after it is id 1), from gap fills' since.
    for symbol in ("ETHUSDT", "XRPUSDT", "XLMUSDT", "TRXUSDT", "LTCUSDT"):
        write_gap_fill(lake, symbol, 1, 0, since=START)
    write_gap_fill(lake, "TRXUSDT", 3, 2, since=_minute(2))  # id 3 is the first at or after 10:02
    write_gap_fill(lake, "LTCUSDT", 5, 4, since=_minute(1) + timedelta(seconds=30))  # an anchor only
    # SOLUSDT: the ledger's window [10:00, 10:05), ids [1, 7): two still missing (3 and 4).
    write_window(lake, "SOLUSDT", START, filled=0, refused=2, ids=(1, 7), end=_minute(5))
    # ADAUSDT: a complete window [10:00, 10:03), ids [1, 4): covered to 10:02:59.999999, and id 4 after it.
    write_window(lake, "ADAUSDT", START, filled=0, ids=(1, 4), end=_minute(3))
    # DOGEUSDT: a complete window [10:00, 10:15), ids [1, 3).
    write_window(lake, "DOGEUSDT", START, filled=0, ids=(1, 3), end=_minute(15))


def _statuses_only(lake: ObjectStore) -> None:
    """No trade: an anchor, holes from the ledger and from a gap fill, and a heartbeat."""
    write_gap_fill(lake, "BTCUSDT", 1, 0, since=START)  # a start gap's anchor: id 1 is the first at 10:00
    write_window(lake, "SOLUSDT", START, filled=0, holes=(3, 4), ids=(1, 7), end=_minute(5))  # re-checked
    write_gap_fill(lake, "XRPUSDT", 3, 4, holes=(3, 4))
    _heartbeat(lake, "ADAUSDT", START_US + 5 * MINUTE_US + 30_000_000, (3, START_US + MINUTE_US + 50_000_000))


@pytest.fixture(scope="module")
def phases(tmp_path_factory) -> Phases:
    folder = tmp_path_factory.mktemp("completeness")
    lake = open_lake(f"file://{folder / 'lake'}")
    path, target = folder / "warehouse.duckdb", folder / "dbt"
    _first_load(lake)
    load(lake, path)
    build(path, target)
    first, first_built = _marts(path), _built_at(path)
    _statuses_only(lake)
    load(lake, path)
    build(path, target)
    statuses, statuses_built = _marts(path), _built_at(path)
    statuses_full = _full_refresh(path, folder, "statuses-full")
    write_trades(lake, _trades("ETHUSDT", ETH_BACKFILL), "backfill", START_US + 3_600_000_000)
    load(lake, path)
    build(path, target)
    backfill = _marts(path)
    backfill_full = _full_refresh(path, folder, "backfill-full")
    built_at = {"first": first_built, "statuses": statuses_built}
    return Phases(first, statuses, statuses_full, backfill, backfill_full, built_at, folder)


def minute(marts: Marts, symbol: str, number: int, interval: str = "1m") -> Candle:
    return marts[interval][(symbol, START_US + number * MINUTE_US)]


def prices(candle: Candle) -> tuple:
    return (candle.open, candle.high, candle.low, candle.close)


def flat(price: str) -> tuple:
    return (Decimal(price),) * 4


def test_a_minute_without_a_trade_between_consecutive_ids_is_complete_and_flat(phases):
    empty = minute(phases.first, "BTCUSDT", 1)
    assert (empty.trade_count, empty.volume, empty.first_trade_id, empty.is_closed) == (0, 0, None, True)
    assert empty.is_complete
    assert prices(empty) == flat("101")  # id 2's price: the last trade before it
    for number in range(1, 12):  # DOGEUSDT: eleven minutes between ids 1 and 2
        assert minute(phases.first, "DOGEUSDT", number).is_complete
        assert prices(minute(phases.first, "DOGEUSDT", number)) == flat("0.1")
    assert minute(phases.first, "DOGEUSDT", 13).is_complete, "after id 2: the window's end anchor (id 3 at 10:15)"


def test_a_gap_leaves_its_minutes_incomplete_and_the_empty_ones_without_a_price(phases):
    eth = [minute(phases.first, "ETHUSDT", number) for number in range(6)]
    # Ids 3 to 7 are missing between id 2 (10:00:40) and id 8 (10:04:10): every minute they may fall in.
    assert [candle.is_complete for candle in eth] == [False, False, False, False, False, True]
    for candle in eth[1:4]:
        assert (candle.trade_count, candle.volume, candle.is_closed) == (0, 0, True)
        assert prices(candle) == (None,) * 4, "never a flat candle over a gap"
    assert prices(eth[0]) == (Decimal("200"), Decimal("201"), Decimal("200"), Decimal("201")), "the trades it has"
    assert (eth[4].first_trade_id, eth[4].last_trade_id, eth[4].trade_count) == (8, 9, 2)
    assert minute(phases.first, "ETHUSDT", 0, "5m").is_complete is False


def test_exchange_side_holes_from_the_ledger_or_a_gap_fill_leave_the_minutes_complete(phases):
    for symbol, price in (("SOLUSDT", "31"), ("XRPUSDT", "0.51")):
        before = [minute(phases.first, symbol, number) for number in range(3)]
        after = [minute(phases.statuses, symbol, number) for number in range(3)]
        # Before: ids 3 and 4 missing (SOLUSDT's window says so; XRPUSDT's lake lacks them).
        assert [candle.is_complete for candle in before] == [False, False, False], symbol
        assert prices(before[1]) == (None,) * 4
        assert [candle.is_complete for candle in after] == [True, True, True], symbol
        assert prices(after[1]) == flat(price)


def test_an_anchor_from_a_gap_fills_since_makes_the_first_minute_complete(phases):
    assert not minute(phases.first, "BTCUSDT", 0).is_complete, "nothing tells that id 1 is the first of 10:00"
    assert minute(phases.statuses, "BTCUSDT", 0).is_complete
    assert minute(phases.first, "ETHUSDT", 5).is_complete  # after its gap, with the anchor loaded from the start
    for interval in ("5m", "15m", "1h"):  # 10:00 opens each: every minute so far complete
        assert not minute(phases.first, "BTCUSDT", 0, interval).is_complete, interval
        assert minute(phases.statuses, "BTCUSDT", 0, interval).is_complete, interval
    for interval, seconds in (("4h", 14_400), ("1d", 86_400)):  # they open at 08:00 and 00:00
        bucket = phases.statuses[interval][("BTCUSDT", START_US - START_US % (seconds * 1_000_000))]
        assert not bucket.is_complete, f"{interval}: it starts before the symbol's first minute"
        assert bucket.trade_count == len(BTC)


def test_an_anchor_tells_where_an_id_falls_not_that_the_trade_is_known(phases):
    """TRXUSDT: id 3 is the first trade at or after 10:02, and the lake lacks it: it is in 10:02 or
    later, so 10:02 and 10:03 (which holds id 4) may miss it; 10:01 is known empty (ids 2 and 3 around it)."""
    trx = [minute(phases.first, "TRXUSDT", number) for number in range(4)]
    assert [candle.is_complete for candle in trx] == [True, True, False, False]
    assert prices(trx[1]) == flat("0.21")
    assert prices(trx[2]) == (None,) * 4
    assert trx[3].trade_count == 1


def test_an_empty_minute_whose_previous_close_is_not_known_has_no_price(phases):
    """LTCUSDT: ids 3 and 4 are missing, both before 10:01:30 (id 5 is the first at or after it): 10:02
    has no trade for sure, but its close would be id 4's price, which the lake lacks."""
    ltc = [minute(phases.first, "LTCUSDT", number) for number in range(4)]
    assert [candle.is_complete for candle in ltc] == [False, False, False, True]
    assert prices(ltc[2]) == (None,) * 4, "not flat at id 2's price: the last trade before it is id 4"


def test_larger_buckets_are_complete_when_every_minute_is_and_flat_only_then(phases):
    # DOGEUSDT [10:05, 10:10): five empty complete minutes: complete, flat at id 1's price.
    empty = minute(phases.first, "DOGEUSDT", 5, "5m")
    assert (empty.trade_count, empty.is_closed, empty.is_complete) == (0, True, True)
    assert prices(empty) == flat("0.1")
    # ADAUSDT [10:05, 10:10): its one minute so far is forming and empty: not complete, no price.
    forming = minute(phases.statuses, "ADAUSDT", 5, "5m")
    assert (forming.trade_count, forming.is_complete, prices(forming)) == (0, False, (None,) * 4)
    # ETHUSDT [10:00, 10:05): complete once the backfill closed the gap.
    assert minute(phases.backfill, "ETHUSDT", 0, "5m").is_complete


def test_quote_sums_are_exact_to_sixteen_decimals(phases):
    quotes = [Decimal(price) * Decimal(quantity) for _, _, _, price, quantity in XLM]
    assert all(-quote.normalize().as_tuple().exponent == 16 for quote in quotes), "each product needs all 16 decimals"
    taker = [quote for (trade_id, *_), quote in zip(XLM, quotes, strict=True) if trade_id % 2]
    first_minute = minute(phases.first, "XLMUSDT", 0)
    assert first_minute.quote_volume == quotes[0] + quotes[1]
    assert first_minute.taker_buy_quote_volume == quotes[0]
    for interval in ("5m", "1h", "1d"):
        bucket = next(row for (symbol, _), row in phases.first[interval].items() if symbol == "XLMUSDT")
        assert bucket.quote_volume == sum(quotes), interval
        assert bucket.taker_buy_quote_volume == sum(taker), interval


def test_a_load_of_status_objects_only_equals_a_full_refresh(phases):
    assert phases.statuses == phases.statuses_full
    changed = {
        (interval, symbol)
        for interval in INTERVALS
        for (symbol, open_us), row in phases.statuses[interval].items()
        if phases.first[interval].get((symbol, open_us)) != row
    }
    assert {symbol for _, symbol in changed} >= {"BTCUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"}, "nothing to compare"


def test_a_range_that_starts_on_an_empty_minute_carries_the_close_of_the_kept_minute_before_it(phases):
    """ADAUSDT's second load is a heartbeat: its range starts at its last kept minute, 10:02, empty;
    the minute before it, kept, opens at 0.301 and closes at 0.309."""
    kept = minute(phases.statuses, "ADAUSDT", 1)
    assert kept.open != kept.close
    before, after = phases.built_at["first"], phases.built_at["statuses"]
    kept_key, key = ("ADAUSDT", START_US + MINUTE_US), ("ADAUSDT", START_US + 2 * MINUTE_US)
    assert after[kept_key] == before[kept_key], "10:01 was kept"
    assert after[key] != before[key], "10:02 was recomputed"
    recomputed = minute(phases.statuses, "ADAUSDT", 2)
    assert (recomputed.trade_count, recomputed.is_closed, recomputed.is_complete) == (0, True, True)
    assert prices(recomputed) == flat("0.309")
    assert recomputed == minute(phases.statuses_full, "ADAUSDT", 2)
    # After the window's end (10:03) nothing tells of id 4 yet: the heartbeat's minutes are not complete.
    assert [minute(phases.statuses, "ADAUSDT", n).is_complete for n in (3, 4, 5)] == [False, False, False]


def test_a_backfill_that_closes_a_span_reaching_back_several_minutes_equals_a_full_refresh(phases):
    eth = [minute(phases.backfill, "ETHUSDT", number) for number in range(6)]
    assert all(candle.is_complete for candle in eth), "the backfill's minute is 10:03, its span began at 10:00"
    assert prices(eth[1]) == prices(eth[2]) == flat("201")
    assert (eth[3].first_trade_id, eth[3].last_trade_id, eth[3].trade_count) == (3, 7, 5)
    assert phases.backfill == phases.backfill_full
