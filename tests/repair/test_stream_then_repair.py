"""The product's promise end to end: stream through a lossy exchange, repair, and hold every trade once.

A sandbox exchange drops 5% of its WebSocket trade messages and cuts every connection every 2 s.
The streaming worker runs against it for a while, then ``repair_window`` checks the streamed time
range hour window by hour window and fills what is missing from REST. The result is judged against
the exchange's own REST history (the truth, trade by trade) and its fault record (``GET /admin``),
never against the product's own counters alone.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from include.binance.client import BinanceClient
from include.lake.keys import BATCH_PREFIX
from include.lake.split import split_batches
from include.lake.store import LocalStore
from include.lake.trades import read_table, read_trades
from include.repair.ledger import read_report
from include.repair.repair import hour_windows, repair_window
from include.sandbox.faults import FaultSettings
from include.timeutil import from_us, to_us
from tests.support.exchange import (
    STREAMED_OR_BACKFILLED,
    CutRecorder,
    assert_matches_exchange,
    rest_history,
    stream_for,
)
from tests.support.net import MICRO, admin

SYMBOLS = ("BTCUSDT", "ETHUSDT")
RATE = 50.0  # trades per second per symbol, on average
STREAM_SECONDS = 12.0


def in_range(table: pa.Table, start_us: int, end_us: int) -> pa.Table:
    times = pc.cast(table["trade_time"], pa.int64())
    return table.filter(pc.and_(pc.greater_equal(times, start_us), pc.less(times, end_us)))


@pytest.mark.slow
def test_streamed_through_skips_and_drops_then_repaired_the_lake_is_the_exchange(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    faults = FaultSettings(skip_fraction=0.05, drop_connections_every=2.0)
    with start_sandbox(symbols=SYMBOLS, rate=RATE, faults=faults) as sandbox:
        cuts = CutRecorder(sandbox)
        stream_for(lake, sandbox.ws_url, STREAM_SECONDS, SYMBOLS, silence_seconds=30)
        record = admin(sandbox)["record"]
        streamed = {symbol: read_trades(lake, symbol) for symbol in SYMBOLS}
        streamed_keys = {info.key for info in lake.list("trades/")}
        assert streamed_keys
        assert all(key.startswith(BATCH_PREFIX) for key in streamed_keys), streamed_keys

        # The range the stream covered: from its first trade to just after its last, over both symbols.
        times = [pc.cast(streamed[s]["trade_time"], pa.int64()).to_numpy() for s in SYMBOLS]
        assert all(len(t) for t in times), "nothing was streamed"
        start_us = int(min(t.min() for t in times))
        end_us = int(max(t.max() for t in times)) + 1
        windows = hour_windows(from_us(start_us), from_us(end_us))
        assert [to_us(windows[0][0]), to_us(windows[-1][1])] == [start_us, end_us]
        assert all(end.minute == 0 and end.second == 0 for _, end in windows[:-1])  # cut at clock hours

        # The market carries on, so each window's end is in the past with a trade after it.
        with BinanceClient(sandbox.rest_url) as client:
            reports = {s: [repair_window(client, lake, s, start, end) for start, end in windows] for s in SYMBOLS}
            # A second pass over the same windows finds nothing to do.
            lake_before_again = {info.key: info.etag for info in lake.list("trades/")}
            again = {s: [repair_window(client, lake, s, start, end) for start, end in windows] for s in SYMBOLS}
            assert {info.key: info.etag for info in lake.list("trades/")} == lake_before_again
        # The hourly split turns the stream's batches into files per symbol-hour: what follows reads those.
        split_batches(lake, end_us + 3_600_000_000)
        assert list(lake.list(BATCH_PREFIX)) == []
        exchange = {
            symbol: rest_history(sandbox.rest_url, symbol, headers=MICRO, until_us=end_us) for symbol in SYMBOLS
        }

    assert record["dropped_connections"] >= 3, record
    for symbol in SYMBOLS:
        truth = {row["id"]: row for row in exchange[symbol] if start_us <= row["time"] < end_us}
        truth_ids = sorted(truth)
        assert len(truth_ids) > 100, (symbol, len(truth_ids))

        # Every row in the lake, from stream and backfill files alike: no id is stored twice.
        table = read_trades(lake, symbol)
        counts = Counter(table["trade_id"].to_pylist())
        assert [i for i, n in counts.items() if n > 1] == []

        # Over the range, the lake holds exactly the exchange's trades, value for value.
        window = in_range(table, start_us, end_us)
        assert sorted(window["trade_id"].to_pylist()) == truth_ids
        assert_matches_exchange(window, truth, symbol, STREAMED_OR_BACKFILLED)

        # The stream missed the skipped ids and what the cuts had in flight, nothing else; the repair
        # filled exactly what it missed.
        streamed_ids = set(in_range(streamed[symbol], start_us, end_us)["trade_id"].to_pylist())
        missed = set(truth_ids) - streamed_ids
        skipped = {i for i in record["skipped_ids"].get(symbol, []) if i in truth}
        assert len(skipped) >= 5, (symbol, record["skipped"])
        assert skipped <= missed
        unexplained = [(a, b) for a, b in cuts.unexplained(symbol, missed) if not set(range(a, b + 1)) <= skipped]
        assert unexplained == [], (symbol, cuts.cuts)
        print(f"\n{symbol}: {len(truth_ids)} trades, {len(missed)} missed ({len(skipped)} skipped), repaired")
        symbol_reports = reports[symbol]
        files = [key for report in symbol_reports for key in report.files]
        assert all("/backfill-" in key for key in files), files
        filled_ids = [i for key in files for i in read_table(lake.get(key))["trade_id"].to_pylist()]
        assert sorted(filled_ids) == sorted(missed)
        assert sum(report.filled for report in symbol_reports) == len(missed)

        # The ledger: one report per window, complete, no exchange-side holes, counts that add up.
        for (start, end), report in zip(windows, symbol_reports, strict=True):
            in_window = [i for i in truth_ids if to_us(start) <= truth[i]["time"] < to_us(end)]
            assert (report.expected, report.missing, report.holes) == (len(in_window), 0, [])
            assert report.present_before == len(streamed_ids & set(in_window))
            assert report.filled == len(set(in_window) - streamed_ids)
            stored = read_report(lake, symbol, start)  # as the second pass left it: complete, nothing to fill
            assert stored is not None
            assert (stored.first_id, stored.end_id) == (report.first_id, report.end_id)
            assert (stored.present_before, stored.filled, stored.missing) == (len(in_window), 0, 0)
        for report in again[symbol]:
            assert (report.filled, report.missing, report.files) == (0, 0, [])
