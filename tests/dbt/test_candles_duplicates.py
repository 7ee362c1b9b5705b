"""Two overlapping stream windows into one lake, as two Airflow runs of the stream DAG (two writers)
would write them: raw.trades holds the trades of the overlap twice, stg_trades each once, and every
closed, complete candle equals the exchange's kline (the minute both streams delivered is complete).

The streams run for seconds, so on the wall clock the minute they cover would almost always still be
forming at the build, and no candle holding a duplicate would be compared. So once both streams run,
the exchange's clock jumps ahead to just before a minute boundary and the streams stop after it: the
minute that closes holds trades both delivered. What neither stream covered (before the first one
subscribed, after the last one stopped) is repaired from REST afterwards.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from include.lake.keys import WRITES_PREFIX
from include.lake.store import ObjectStore, open_lake
from include.sandbox.exchange import Exchange
from include.sandbox.server import RunningSandbox, serve_in_thread
from include.timeutil import MICROS_PER_SECOND
from tests.support.candles import assert_closed_candles_are_klines, build, load, query
from tests.support.exchange import import_history, sandbox_config, stream_for
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MINUTE_US = 60 * MICROS_PER_SECOND
LEAD_US = MICROS_PER_SECOND  # both streams run this long before the boundary, after the jump
# The market's trades before the sandbox started: the minute both streams deliver then has trades before
# it, which the import's first anchor (the first trade at or after its start) makes known: it is complete.
HISTORY_SECONDS = 120


class MinuteJump:
    """The exchange's clock, moved ahead once to ``LEAD_US`` before a minute boundary."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.boundary_us: int | None = None

    def jump(self) -> None:
        now, real_clock = self.exchange.now_us(), self.exchange.clock_us
        shift = (-now - LEAD_US) % MINUTE_US  # now + shift is LEAD_US before a whole minute
        self.exchange.clock_us = lambda: real_clock() + shift
        self.boundary_us = now + shift + LEAD_US

    def passed(self, seconds: float) -> bool:
        """The exchange's clock is ``seconds`` past the boundary (False before the jump)."""
        return self.boundary_us is not None and self.exchange.now_us() >= self.boundary_us + seconds * MICROS_PER_SECOND


def _writers(lake: ObjectStore) -> list[str]:
    return [info.key for info in lake.list(WRITES_PREFIX)]


def _until_writers(lake: ObjectStore, count: int, streams: list[Future]) -> None:
    """Wait until ``count`` writers have written (or a stream ended: its error is raised)."""
    wait_until(lambda: len(_writers(lake)) >= count or any(s.done() for s in streams), 60, f"{count} writers")
    for stream in streams:
        if stream.done():
            stream.result()


def _stream_until_past(lake: ObjectStore, ws_url: str, minute: MinuteJump, seconds_past: float, flush_seconds: float):
    """A stream of both symbols, stopped once the exchange's clock is ``seconds_past`` the boundary."""

    def until_past(_worker) -> None:
        wait_until(lambda: minute.passed(seconds_past), 60, f"{seconds_past} s past the minute boundary")

    return stream_for(lake, ws_url, 0.5, symbols=SYMBOLS, before_stop=until_past, flush_seconds=flush_seconds)


def _overlapping_streams(lake: ObjectStore, sandbox: RunningSandbox) -> tuple[list[str], int]:
    """The first stream; the second once the first has written; the jump once both have; the first
    stops 0.5 s past the boundary, the second 1 s past it. The two streams' writers, and the boundary.

    A trade file is named by its ids, so two writers that flush the same ids write one file: the
    streams flush at different paces (as two runs' workers would not flush in step either), in a
    market busy enough that two flushes a moment apart differ."""
    minute = MinuteJump(sandbox.exchange)
    with ThreadPoolExecutor(2) as pool:
        streams = [pool.submit(_stream_until_past, lake, sandbox.ws_url, minute, 0.5, 1.0)]
        _until_writers(lake, 1, streams)
        streams.append(pool.submit(_stream_until_past, lake, sandbox.ws_url, minute, 1, 0.6))
        _until_writers(lake, 2, streams)
        minute.jump()
        return [stream.result(120).writer for stream in streams], minute.boundary_us


@pytest.fixture(scope="module")
def overlapped(tmp_path_factory):
    """(REST URL, warehouse, the streams' writers) while the sandbox still serves its klines."""
    folder = tmp_path_factory.mktemp("duplicates")
    lake = open_lake(f"file://{folder / 'lake'}")
    path = folder / "warehouse.duckdb"
    config = sandbox_config(symbols=SYMBOLS, rate=50.0, history_seconds=HISTORY_SECONDS, weight_limit=10**6)
    with serve_in_thread(config) as sandbox:
        writers, boundary_us = _overlapping_streams(lake, sandbox)
        # Past the boundary, so that its minute is closed, and before the last stream stopped (over).
        # From the market's first trade: whatever the streams missed is filled from REST.
        first_us = sandbox.exchange.started_us - (HISTORY_SECONDS + 1) * MICROS_PER_SECOND
        import_history(sandbox.rest_url, lake, SYMBOLS, first_us, boundary_us + MICROS_PER_SECOND // 2)
        load(lake, path)
        build(path, folder / "dbt")
        yield sandbox.rest_url, path, writers


def test_the_two_streams_are_two_writers_whose_trades_overlap(overlapped):
    _, path, writers = overlapped
    assert len(set(writers)) == 2, writers
    doubled = query(
        path,
        "select symbol, trade_id, list(distinct source) from raw.trades "
        "group by exchange, symbol, trade_id having count(*) > 1",
    )
    assert {symbol for symbol, _, _ in doubled} == set(SYMBOLS), "no trade was delivered twice"
    assert all(sources == ["stream"] for _, _, sources in doubled), "only the two streams deliver a trade twice"


def test_stg_trades_holds_each_trade_once(overlapped):
    _, path, _ = overlapped
    staged = query(path, "select count(*), count(distinct (exchange, symbol, trade_id)) from staging.stg_trades")
    distinct_raw = query(path, "select count(distinct (exchange, symbol, trade_id)) from raw.trades")
    assert staged == [(distinct_raw[0][0],) * 2]


def test_closed_candles_holding_duplicates_equal_the_exchange_klines(overlapped):
    rest_url, path, _ = overlapped
    doubled_in_closed_minutes = query(
        path,
        "with doubled as (select symbol, any_value(trade_time) as trade_time from raw.trades "
        "group by exchange, symbol, trade_id having count(*) > 1) "
        "select count(*) from doubled join marts.candles_1m as candle on candle.symbol = doubled.symbol "
        "and doubled.trade_time >= candle.open_time and doubled.trade_time < candle.open_time + interval 1 minute "
        "where candle.is_closed and candle.is_complete",
    )[0][0]
    assert doubled_in_closed_minutes > 0, (
        "no closed, complete candle holds a trade delivered twice: the test proves nothing"
    )
    compared = assert_closed_candles_are_klines(path, rest_url, SYMBOLS)
    assert compared["1m"] > 0, compared
