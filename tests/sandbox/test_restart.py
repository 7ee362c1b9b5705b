"""A restarted sandbox continues the same market: the same trade under the same id, never an id reused.

``make up`` twice on the same data folder restarts the sandbox while the lake keeps what the first
run streamed; the second run must agree with it trade for trade.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from include.lake.store import LocalStore
from include.lake.trades import read_trades
from include.sandbox.server import RunningSandbox, serve_in_thread
from include.timeutil import now_us
from tests.support.exchange import rest_history, sandbox_config, stream_for
from tests.support.net import MICRO, http_get
from tests.support.waiting import wait_until

SYMBOL = "BTCUSDT"
SETTINGS = {"symbols": (SYMBOL,), "rate": 20.0, "history_seconds": 600.0}


def trade_times(table: pa.Table) -> list[int]:
    return pc.cast(table["trade_time"], pa.int64()).to_pylist()


def agg_history(sandbox: RunningSandbox, start_us: int, end_us: int) -> list[dict[str, Any]]:
    """Every aggregate trade from ``start_us`` to ``end_us`` (inclusive, µs), paged as a client would."""
    base = f"{sandbox.rest_url}/api/v3/aggTrades?symbol={SYMBOL}&limit=1000"
    rows: list[dict[str, Any]] = []
    url = f"{base}&startTime={start_us}&endTime={end_us}"
    while True:
        status, _, page = http_get(url, MICRO)
        assert status == 200, page
        rows += [row for row in page if row["T"] <= end_us]
        if not page or page[-1]["T"] >= end_us:
            return rows
        url = f"{base}&fromId={page[-1]['a'] + 1}"


def test_a_restarted_sandbox_serves_the_same_trades_under_the_same_ids(start_sandbox):
    with start_sandbox(**SETTINGS) as first:
        before = rest_history(first.rest_url, SYMBOL, 0, MICRO)
        aggs_before = agg_history(first, before[0]["time"], before[-1]["time"])
        port = first.port
    with start_sandbox(**SETTINGS, port=port) as second:  # the same settings, on the same port
        after = rest_history(second.rest_url, SYMBOL, 0, MICRO, until_us=before[-1]["time"] + 1)
        # The window both served: from the second's first trade to the first's last.
        start, end = after[0]["time"], before[-1]["time"]
        aggs_after = agg_history(second, start, end)

    shared_before = [t for t in before if start <= t["time"] <= end]
    shared_after = [t for t in after if start <= t["time"] <= end]
    assert len(shared_before) > 10_000  # most of the ten minutes of history, at 20 trades/s
    assert shared_after == shared_before
    # No id stands for two different trades across the runs, inside the shared window or out of it.
    by_id = {t["id"]: t for t in before}
    assert all(by_id[t["id"]] == t for t in after if t["id"] in by_id)
    # Aggregate trades too: the same aggregate ids, trades, prices and times.
    assert len(aggs_after) > 5_000
    assert aggs_after == [a for a in aggs_before if start <= a["T"] <= end]
    assert (aggs_after[0]["f"], aggs_after[-1]["l"]) == (shared_before[0]["id"], shared_before[-1]["id"])


def test_streaming_across_a_restart_stores_each_id_once_as_the_exchange_has_it(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    first = contextlib.ExitStack()
    sandbox = first.enter_context(serve_in_thread(sandbox_config(**SETTINGS)))
    port = sandbox.port
    second = contextlib.ExitStack()

    def streamed_after(time_us: int) -> bool:
        times = trade_times(read_trades(lake, SYMBOL))
        return bool(times) and max(times) > time_us

    def restart(*_: Any) -> None:
        """Stop the exchange under the running worker, start it again on the same port, and wait
        until the worker has streamed trades of the new one into the lake."""
        assert streamed_after(0), "the worker streamed nothing from the first exchange"
        first.close()
        restarted = second.enter_context(serve_in_thread(replace(sandbox_config(**SETTINGS), port=port)))
        started = restarted.exchange.started_us
        wait_until(lambda: streamed_after(started + 2_000_000), 120, "trades of the restarted exchange")

    try:
        stream_for(lake, f"ws://127.0.0.1:{port}", 5.0, before_stop=restart, backoff_cap_seconds=1.0)
        # The restarted exchange's history (ten minutes) covers everything streamed from both.
        table = read_trades(lake, SYMBOL)
        ids = table["trade_id"].to_pylist()
        truth = {
            row["id"]: row
            for row in rest_history(f"http://127.0.0.1:{port}", SYMBOL, min(ids), MICRO, to_id=max(ids) + 1)
        }
    finally:
        first.close()
        second.close()
    times = trade_times(table)
    assert now_us() - min(times) < 600_000_000, "the test outran the restarted exchange's history"
    assert len(ids) == len(set(ids)), "an id is in the lake twice"
    rows = zip(ids, table["price"].to_pylist(), table["quantity"].to_pylist(), times, strict=True)
    stored = {i: (price, qty, time) for i, price, qty, time in rows}
    wrong = {
        i: (row, truth.get(i))
        for i, row in stored.items()
        if truth.get(i) is None or row != (Decimal(truth[i]["price"]), Decimal(truth[i]["qty"]), truth[i]["time"])
    }
    assert not wrong, (
        f"{len(wrong)} of {len(stored)} trades in the lake are not the exchange's: {list(wrong.items())[:3]}"
    )


def test_a_hole_is_an_id_that_never_exists_and_changes_no_other_trade(start_sandbox):
    with start_sandbox(**SETTINGS) as plain:
        trades = rest_history(plain.rest_url, SYMBOL, 0, MICRO)
        port = plain.port
    middle = trades[len(trades) // 2]["id"]
    holes = {middle, middle + 1, middle + 7}
    with start_sandbox(**SETTINGS, port=port, holes={SYMBOL: frozenset(holes)}) as holed:
        with_holes = rest_history(holed.rest_url, SYMBOL, 0, MICRO, until_us=trades[-1]["time"] + 1)
    start = with_holes[0]["time"]
    assert [t for t in trades if t["time"] >= start and t["id"] not in holes] == with_holes
    assert {t["id"] for t in trades} >= holes


def _first_trade_us(sandbox: RunningSandbox) -> int:
    status, _, rows = http_get(f"{sandbox.rest_url}/api/v3/historicalTrades?symbol={SYMBOL}&fromId=0&limit=1", MICRO)
    assert status == 200, rows
    return rows[0]["time"]


def test_history_since_serves_from_the_earlier_of_it_and_the_history_window(start_sandbox):
    """``--history-since`` (what ``up`` gives a restarted sandbox) reaches further back than ``--history``
    (600 s here); a moment inside the ``--history`` window changes nothing. At 20 trades/s the first
    trade is well within a minute of where the history begins."""
    minute_us = 60_000_000
    since_us = now_us() - 20 * minute_us
    with start_sandbox(**SETTINGS, history_since_us=since_us) as further_back:
        assert since_us <= _first_trade_us(further_back) < since_us + minute_us
    with start_sandbox(**SETTINGS, history_since_us=now_us() - minute_us) as within_the_window:
        window_start_us = within_the_window.exchange.started_us - 10 * minute_us
        assert window_start_us <= _first_trade_us(within_the_window) < window_start_us + minute_us
