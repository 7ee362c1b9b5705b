"""The live edge's promise end to end, without the hourly repair: stream through a lossy exchange,
restart the stream once, and the live fill alone makes the lake whole within seconds.

A sandbox skips WebSocket messages, stalls and cuts every connection; a stream worker runs, stops,
and a second one (a new writer, as after a crash) takes over. All the while ``python -m include.cli
fill-gaps --follow`` runs as a real process. ``repair_window`` never runs. The test polls until the
lake holds every trade the exchange has from the first gap's start boundary up to the last trade
streamed, then judges that range against the exchange's REST history, trade by trade, and the candles
built from that lake against the exchange's klines: every closed minute before the last one streamed
is complete, and every complete candle of every interval is the exchange's own.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from collections import Counter

import duckdb
import pytest

from include.binance.client import BinanceClient
from include.lake.keys import LEDGER_PREFIX
from include.lake.store import LocalStore
from include.lake.trades import read_trades
from include.repair.boundary import start_boundary
from include.sandbox.faults import FaultSettings
from tests.support.candles import assert_closed_candles_are_klines, build, load
from tests.support.exchange import STREAMED_OR_BACKFILLED, assert_matches_exchange, history, stream_for
from tests.support.gaps import fill_records, gap_records, ids_of, lake_id_set
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group
from tests.support.waiting import wait_until

SYMBOLS = ("BTCUSDT", "ETHUSDT")
OUTSIDE_SETTINGS = ("EXCHANGE", "SANDBOX_PORT", "BINANCE_REST_URL", "BINANCE_WS_URL", "LAKE_URL", "SYMBOLS")


def lake_is_whole(lake: LocalStore, rest_url: str, spans: dict[str, tuple[int, int]]) -> bool:
    """Every id the exchange has in each symbol's span is in the lake (from any source)."""
    for symbol, (first_id, last_id) in spans.items():
        if not set(history(rest_url, symbol, first_id, last_id)) <= lake_id_set(lake, symbol):
            return False
    return True


def incomplete_minutes_before_the_last(warehouse) -> dict[str, object]:
    """The closed 1m candles before each symbol's last minute with a trade (after it, the first trade
    after a bucket is not known: the streams stopped), and those of them that are not complete."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute(
            "select symbol, open_time, is_complete from marts.candles_1m as candles where is_closed and open_time < "
            "(select max(open_time) from marts.candles_1m as last where last.symbol = candles.symbol "
            "and last.trade_count > 0)"
        ).fetchall()
    return {"incomplete": [row[:2] for row in rows if not row[2]], "closed": len(rows)}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_stream_with_skips_cuts_and_a_restart_is_made_whole_by_the_live_fill_alone(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    faults = FaultSettings(skip_fraction=0.03, drop_connections_every=2.0, stall_every=1.3, stall_seconds=0.5)
    # Two and a half minutes of history before the stream: the start gap spans closed minutes.
    with start_sandbox(symbols=SYMBOLS, rate=50.0, history_seconds=150, faults=faults) as sandbox:
        env = {key: value for key, value in os.environ.items() if key not in OUTSIDE_SETTINGS}
        env.update(BINANCE_REST_URL=sandbox.rest_url, DATA_DIR=str(tmp_path))
        argv = [sys.executable, "-m", "include.cli", "fill-gaps", "--follow", "0.5"]
        with (
            (tmp_path / "fill.log").open("w") as fill_log,
            process_group(argv, env, cwd=REPO_ROOT, stdout=fill_log, stderr=subprocess.STDOUT) as filler,
            BinanceClient(sandbox.rest_url) as client,
        ):
            boundary = functools.partial(start_boundary, client, lake)
            first = stream_for(lake, sandbox.ws_url, 6.0, SYMBOLS, start_boundary=boundary)
            # The stream is down while the exchange trades on: wait until it has made some trades.
            last_before = {s: max(lake_id_set(lake, s, "stream")) for s in SYMBOLS}
            wait_until(
                lambda: all(client.recent_trades(s)[-1]["id"] > last_before[s] + 20 for s in SYMBOLS),
                60,
                "trades made while no stream runs",
            )
            second = stream_for(lake, sandbox.ws_url, 6.0, SYMBOLS, start_boundary=boundary)
            gaps = {symbol: gap_records(lake, symbol) for symbol in SYMBOLS}
            spans = {}
            for symbol in SYMBOLS:
                (start,) = [gap for gap in gaps[symbol] if gap["kind"] == "start"]
                spans[symbol] = (start["first_id"], max(lake_id_set(lake, symbol, "stream")))
            wait_until(
                lambda: lake_is_whole(lake, sandbox.rest_url, spans),
                300,
                "the live fill making the lake whole",
                interval=0.5,
            )
            truth = {symbol: history(sandbox.rest_url, symbol, *spans[symbol]) for symbol in SYMBOLS}
            assert filler.poll() is None, "the follower ended by itself"
            filler.send_signal(signal.SIGINT)
            assert filler.wait(60) == 0
        # The candles of that lake, with no hourly repair: complete, and the exchange's own.
        warehouse = tmp_path / "warehouse.duckdb"
        load(lake, warehouse)
        build(warehouse, tmp_path / "dbt")
        compared = assert_closed_candles_are_klines(warehouse, sandbox.rest_url, SYMBOLS)
        settled = incomplete_minutes_before_the_last(warehouse)
    assert settled == {"incomplete": [], "closed": settled["closed"]}, settled
    assert settled["closed"] >= 2 * len(SYMBOLS), settled  # the comparison compared something
    assert compared["1m"] >= settled["closed"], compared
    log = (tmp_path / "fill.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert first.writer != second.writer
    assert not list(lake.list(LEDGER_PREFIX)), "the hourly repair ran"

    kinds = Counter(gap["kind"] for found in gaps.values() for gap in found)
    assert kinds["start"] == len(SYMBOLS)
    assert kinds["restart"] == len(SYMBOLS)
    assert kinds["jump"] >= 5
    assert kinds["reconnect"] >= 1
    for symbol in SYMBOLS:
        first_id, last_id = spans[symbol]
        table = read_trades(lake, symbol)
        table = table.filter([first_id <= i <= last_id for i in table["trade_id"].to_pylist()])
        ids = table["trade_id"].to_pylist()
        assert [i for i, n in Counter(ids).items() if n > 1] == [], f"{symbol}: ids stored twice"
        assert sorted(ids) == sorted(truth[symbol])
        assert_matches_exchange(table, truth[symbol], symbol, STREAMED_OR_BACKFILLED)
        # What the streams missed is exactly what they recorded, and the fill wrote exactly that.
        backfilled = lake_id_set(lake, symbol, "backfill")
        assert backfilled == set(truth[symbol]) - lake_id_set(lake, symbol, "stream")
        assert backfilled <= ids_of(gaps[symbol])
        assert all(record["missing"] == 0 for record in fill_records(lake, symbol))
