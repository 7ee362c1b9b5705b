"""The stream sees each gap as it happens, and records it in the lake with the trades after it.

The detector's rules on made-up ids first; then the real worker against a real sandbox over real
sockets, judged by the exchange's own account: the ids it skipped (``GET /admin``), its REST
history, and the connections it cut.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from include.binance.client import BinanceClient
from include.ingest.gaps import Boundary, GapDetector, lake_last_id
from include.lake.heartbeats import read_status
from include.lake.keys import BATCH_PREFIX, GAP_WRITES_PREFIX, gap_key
from include.lake.markers import writes_fingerprint
from include.lake.store import LocalStore
from include.lake.trades import batch_object, write_trades
from include.repair.boundary import start_boundary
from include.repair.ledger import read_report
from include.repair.repair import repair_window
from include.sandbox.faults import FaultSettings
from include.timeutil import HOUR_US, from_us, hour_start_us, to_us
from tests.support.exchange import CutRecorder, history, stream_for
from tests.support.gaps import gap_records, ids_of, lake_id_set
from tests.support.net import admin
from tests.support.trades import SplitAfterFirstListing, columns
from tests.support.waiting import wait_until

SYMBOL = "BTCUSDT"
T0 = to_us(datetime(2026, 11, 24, 13, 30, tzinfo=UTC))


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def times_for(trade_ids: np.ndarray) -> np.ndarray:
    return T0 + trade_ids * 1000


def observe(detector: GapDetector, *values: int) -> list[tuple[int, int, str]]:
    found = detector.observe(SYMBOL, ids(*values), times_for(ids(*values)), T0)
    return [(gap.first_id, gap.last_id, gap.kind) for gap in found]


# The detector's rules -----------------------------------------------------------------------------


def test_jumps_are_found_in_any_order_and_late_ids_are_not_gaps(tmp_path):
    detector = GapDetector(LocalStore(tmp_path))
    assert observe(detector, 10, 11, 14, 12, 20) == [(13, 13, "jump"), (15, 19, "jump")]
    assert observe(detector, 21, 25) == [(22, 24, "jump")]
    assert observe(detector, 13, 15, 16) == []  # at or below the last id written: late, not a gap
    assert observe(detector, 23, 26) == []  # 23 is late; 26 follows 25
    assert observe(detector) == []
    assert detector.last_written[SYMBOL] == 26


def test_the_next_trade_time_of_a_gap_is_the_trade_after_it(tmp_path):
    detector = GapDetector(LocalStore(tmp_path))
    (gap,) = detector.observe(SYMBOL, ids(7, 3, 2), ids(30, 20, 10) + T0, T0 + 99)
    assert (gap.first_id, gap.last_id, gap.next_trade_time_us, gap.detected_at_us) == (4, 6, T0 + 30, T0 + 99)


def test_only_the_gap_across_a_reconnect_is_a_reconnect_gap(tmp_path):
    detector = GapDetector(LocalStore(tmp_path))
    assert observe(detector, 1, 2) == []
    detector.reconnected([SYMBOL, "ETHUSDT"])
    assert observe(detector, 1, 2) == []  # late frames of the old connection say nothing yet
    assert observe(detector, 6, 7, 9) == [(3, 5, "reconnect"), (8, 8, "jump")]
    assert observe(detector, 11) == [(10, 10, "jump")]
    detector.reconnected([SYMBOL])
    assert observe(detector, 12, 14) == [(13, 13, "jump")]  # nothing lost across this reconnect
    assert observe(detector, 16) == [(15, 15, "jump")]


def test_the_first_trades_are_anchored_against_the_lake_from_its_keys_alone(tmp_path):
    lake = LocalStore(tmp_path)
    hour = hour_start_us(T0)
    write_trades(lake, columns(SYMBOL, 100, 50, hour - HOUR_US + 60_000_000), "stream", T0)  # 100..149
    write_trades(lake, columns(SYMBOL, 150, 10, hour + 60_000_000), "backfill", T0)  # 150..159
    write_trades(lake, columns(SYMBOL, 500, 10, hour + 120_000_000), "stream", T0)  # another writer, later
    write_trades(lake, columns(SYMBOL, 1, 10, hour - 2 * HOUR_US), "stream", T0)  # too old to be looked at
    for key in [info.key for info in lake.list("trades/")]:  # the keys are the evidence: blank the files
        lake.put(key, b"not parquet")
    assert lake_last_id(lake, SYMBOL, 170, T0) == 159
    assert lake_last_id(lake, SYMBOL, 600, T0) == 509
    assert lake_last_id(lake, SYMBOL, 100, T0) is None
    assert lake_last_id(lake, "ETHUSDT", 170, T0) is None


def batch_of(lake, parts, writer: str = "stream-old") -> None:
    key, data = batch_object(parts, "stream", T0, writer, T0)
    lake.put(key, data)


def test_the_first_trades_are_anchored_against_the_stream_batches_split_or_not(tmp_path):
    lake = LocalStore(tmp_path)
    hour = hour_start_us(T0)
    batch_of(lake, [columns(SYMBOL, 100, 50, hour - HOUR_US + 60_000_000), columns("ETHUSDT", 7, 3, hour)])
    batch_of(lake, [columns(SYMBOL, 150, 10, hour + 60_000_000)])  # 150..159
    batch_of(lake, [columns("ETHUSDT", 900, 5, hour + 60_000_000)], "stream-other")
    cache = {}
    assert lake_last_id(lake, SYMBOL, 170, T0, cache) == 159
    assert lake_last_id(lake, SYMBOL, 155, T0, cache) == 154  # below the first id, inside a batch
    assert lake_last_id(lake, "ETHUSDT", 900, T0, cache) == 9
    assert lake_last_id(lake, SYMBOL, 100, T0, cache) is None
    assert len(cache) == 3  # each batch read once, for every symbol

    # The hourly split runs between the lookup's listing of the batches and of the symbol's hours.
    splitting = SplitAfterFirstListing(tmp_path, hour + HOUR_US)
    assert lake_last_id(splitting, SYMBOL, 170, T0) == 159
    assert splitting.split
    assert list(lake.list(BATCH_PREFIX)) == []
    assert lake_last_id(lake, SYMBOL, 170, T0) == 159  # from the split files' keys now

    asked: list[tuple[str, int]] = []
    detector = GapDetector(lake, lambda symbol, time_us: asked.append((symbol, time_us)) or Boundary(40, hour))
    assert observe(detector, 175, 176) == []  # the first trades: their gap needs the lake, in the I/O half
    (restart,) = detector.anchor(T0 + 5)
    assert (restart.first_id, restart.last_id, restart.kind, restart.since_us) == (160, 174, "restart", None)
    assert restart.next_trade_time_us == int(times_for(ids(175))[0])
    assert detector.anchor(T0) == []  # anchored once
    assert asked == []  # the lake knew: no boundary asked for

    fresh = GapDetector(lake, lambda symbol, time_us: Boundary(40, hour))
    assert fresh.observe(SYMBOL, ids(60, 61), times_for(ids(60, 61)), T0) == []
    (gap,) = fresh.anchor(T0)  # nothing in the lake below 60: the boundary is the start
    assert (gap.first_id, gap.last_id, gap.kind, gap.since_us) == (40, 59, "start", hour)


def test_a_start_boundary_at_the_first_trade_is_still_recorded_as_an_anchor(tmp_path):
    detector = GapDetector(LocalStore(tmp_path), lambda symbol, time_us: Boundary(60, T0 - 5))
    detector.observe(SYMBOL, ids(61, 60), times_for(ids(61, 60)), T0)
    (gap,) = detector.anchor(T0)
    assert (gap.first_id, gap.last_id, gap.missing, gap.since_us) == (60, 59, 0, T0 - 5)
    record = json.loads(gap.to_json("w-1"))
    assert record == {
        "symbol": SYMBOL,
        "first_id": 60,
        "last_id": 59,
        "since": from_us(T0 - 5).isoformat(),
        "kind": "start",
        "next_trade_time": from_us(int(times_for(ids(60))[0])).isoformat(),
        "detected_at": from_us(T0).isoformat(),
        "writer": "w-1",
    }
    assert gap.key("w-1") == gap_key(SYMBOL, from_us(T0), 60, 59, "w-1")


def test_a_boundary_that_cannot_be_asked_is_asked_again_at_the_next_flush(tmp_path):
    from include.binance.client import BinanceUnavailable

    answers = [BinanceUnavailable(0, None, "down", "aggTrades"), Boundary(5, T0)]

    def boundary(symbol: str, time_us: int) -> Boundary:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    detector = GapDetector(LocalStore(tmp_path), boundary)
    detector.observe(SYMBOL, ids(9), times_for(ids(9)), T0)
    assert detector.anchor(T0) == []
    (gap,) = detector.anchor(T0)
    assert (gap.first_id, gap.last_id) == (5, 8)


# The real worker against the sandbox ----------------------------------------------------------------


def boundary_for(rest_url: str, lake: LocalStore, clients: list[BinanceClient]):
    client = BinanceClient(rest_url)
    clients.append(client)
    return functools.partial(start_boundary, client, lake)


def trade(symbol: str, trade_id: int, time_us: int) -> bytes:
    data = {"e": "trade", "E": time_us, "s": symbol, "t": trade_id, "p": "1.5", "q": "2", "T": time_us, "m": False}
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data}).encode()


def streamed(lake: LocalStore, symbol: str = SYMBOL) -> set[int]:
    return lake_id_set(lake, symbol, "stream")


@pytest.mark.slow
def test_skipped_messages_are_jumps_exactly_and_the_start_gap_runs_from_the_hour(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    clients: list[BinanceClient] = []
    with start_sandbox(
        symbols=(SYMBOL,), rate=100.0, history_seconds=120, faults=FaultSettings(skip_fraction=0.05)
    ) as sandbox:
        worker = stream_for(
            lake,
            sandbox.ws_url,
            6.0,
            (SYMBOL,),
            start_boundary=boundary_for(sandbox.rest_url, lake, clients),
        )
        skipped = set(admin(sandbox)["record"]["skipped_ids"][SYMBOL])
        got = streamed(lake)
        first, last = min(got), max(got)
        records = gap_records(lake, SYMBOL)
        start, *jumps = records
        hour = hour_start_us(to_us(datetime.fromisoformat(start["next_trade_time"])))
        with BinanceClient(sandbox.rest_url) as client:
            boundary_id = client.first_trade_id_at_or_after(SYMBOL, hour)[0]
    for client in clients:
        client.close()

    # Everything before the first streamed trade, from the first trade of its hour: the start gap.
    assert (start["kind"], start["first_id"], start["last_id"]) == ("start", boundary_id, first - 1)
    assert start["since"] == from_us(hour).isoformat()
    # Inside one connection, the ids the exchange skipped and nothing else, each gap once.
    assert {r["kind"] for r in jumps} == {"jump"}
    assert ids_of(jumps) == {i for i in skipped if first < i < last}
    assert len(ids_of(jumps)) == sum(r["last_id"] - r["first_id"] + 1 for r in jumps)
    assert len(jumps) >= 5
    assert not ids_of(jumps) & got
    for record in jumps:  # the trade after each gap is the one streamed right after it
        assert record["last_id"] + 1 in got
        assert record["writer"] == worker.writer
    # Counted in the stats and the heartbeat; announced in the writer's gap marker.
    assert worker.stats.gaps == len(records)
    assert worker.stats.gap_ids == len(ids_of(records))
    heartbeat = read_status(lake, SYMBOL)
    assert (heartbeat["gaps"], heartbeat["gap_ids"]) == (len(records), len(ids_of(records)))
    assert heartbeat["counters"]["gaps"] == len(records)
    (marker,) = [json.loads(lake.get(info.key)) for info in lake.list(GAP_WRITES_PREFIX)]
    assert marker["writer"] == worker.writer
    assert set(marker["partitions"]) == {r["key"].rsplit("/", 1)[0] + "/" for r in records}


@pytest.mark.slow
def test_dropped_connections_are_reconnect_gaps_exactly_and_skips_inside_them_jumps(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    # A reconnect takes milliseconds, often too little to lose a trade; a cut during a stall (every
    # other cut here) loses what the stall held back.
    faults = FaultSettings(drop_connections_every=1.5, stall_every=1.0, stall_seconds=0.6, skip_fraction=0.02)
    with start_sandbox(symbols=(SYMBOL,), rate=100.0, faults=faults) as sandbox:
        cuts = CutRecorder(sandbox)
        stream_for(lake, sandbox.ws_url, 8.0, (SYMBOL,))
        record = admin(sandbox)["record"]
        got = streamed(lake)
        first, last = min(got), max(got)
        truth = set(history(sandbox.rest_url, SYMBOL, first, last))
    records = gap_records(lake, SYMBOL)
    assert record["dropped_connections"] >= 3
    # Every id the exchange made between the first and last trade streamed: streamed or on record.
    assert ids_of(records) == truth - got
    assert not ids_of(records) & got
    assert {r["kind"] for r in records} <= {"reconnect", "jump"}  # no start boundary was given
    # A jump is what one connection skipped; what a cut lost is a reconnect gap (with skips next to it).
    skipped = set(record["skipped_ids"][SYMBOL])
    reconnects = [r for r in records if r["kind"] == "reconnect"]
    assert ids_of([r for r in records if r["kind"] == "jump"]) <= skipped
    lost_to_cuts = [r for r in records if not ids_of([r]) <= skipped]
    assert [r for r in lost_to_cuts if cuts.unexplained(SYMBOL, ids_of([r]))] == []
    assert lost_to_cuts, "no cut lost a trade: the test proves nothing"
    assert [r["kind"] for r in lost_to_cuts] == ["reconnect"] * len(lost_to_cuts)
    assert len(reconnects) <= record["dropped_connections"]


@pytest.mark.slow
def test_a_restarted_stream_records_the_ids_since_the_lakes_last_one(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=100.0) as sandbox:
        before = stream_for(lake, sandbox.ws_url, 3.0, (SYMBOL,))
        last_before = max(streamed(lake))
        # Trades made while no stream is connected are the restart's gap: wait for one (the sandbox makes
        # its trades in ticks, so a stream reconnected within a tick may have missed nothing).
        wait_until(
            lambda: admin(sandbox)["symbols"][SYMBOL]["last_id"] > last_before + 1,
            60,
            "a trade made between the two streams",
        )
        after = stream_for(lake, sandbox.ws_url, 3.0, (SYMBOL,))  # a new writer: nothing in memory
        got = streamed(lake)
        first_after = min(i for i in got if i > last_before)
        truth = set(history(sandbox.rest_url, SYMBOL, min(got), max(got)))
    (restart,) = [r for r in gap_records(lake, SYMBOL) if r["kind"] == "restart"]
    assert (restart["first_id"], restart["last_id"]) == (last_before + 1, first_after - 1)
    assert restart["writer"] == after.writer != before.writer
    assert restart["since"] is None
    assert ids_of(gap_records(lake, SYMBOL)) == truth - got


@pytest.mark.slow
def test_with_nothing_in_the_lakes_last_two_hours_the_start_is_the_ledgers_last_complete_window(
    start_sandbox, tmp_path
):
    lake = LocalStore(tmp_path / "lake")
    clients: list[BinanceClient] = []
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = (this_hour - timedelta(hours=3), this_hour - timedelta(hours=2))
    with start_sandbox(symbols=(SYMBOL,), rate=2.0, history_seconds=4 * 3600) as sandbox:
        with BinanceClient(sandbox.rest_url) as client:
            repair_window(client, lake, SYMBOL, *window)
        report = read_report(lake, SYMBOL, window[0])
        assert report is not None
        assert report.complete
        boundary = boundary_for(sandbox.rest_url, lake, clients)
        stream_for(lake, sandbox.ws_url, 8.0, (SYMBOL,), start_boundary=boundary)
    for client in clients:
        client.close()
    got = streamed(lake)
    (start,) = gap_records(lake, SYMBOL)
    assert start["kind"] == "start"
    assert start["since"] == window[1].isoformat()
    assert (start["first_id"], start["last_id"]) == (report.end_id, min(got) - 1)


def test_the_gap_watcher_folder_changes_only_when_a_gap_is_recorded(tmp_path):
    from include.ingest.batcher import MicroBatcher

    lake = LocalStore(tmp_path)
    batcher = MicroBatcher(lake, frozenset({SYMBOL}), "w-1")
    quiet = writes_fingerprint(lake, GAP_WRITES_PREFIX)
    for frames in ([trade(SYMBOL, 1, T0), trade(SYMBOL, 2, T0 + 1)], [trade(SYMBOL, 3, T0 + 2)]):
        for frame in frames:
            batcher.add(frame)
        batcher.write(batcher.take())
    assert writes_fingerprint(lake, GAP_WRITES_PREFIX) == quiet
    batcher.add(trade(SYMBOL, 6, T0 + 3))
    result = batcher.write(batcher.take())
    assert [(g.first_id, g.last_id, g.kind) for g in result.gaps] == [(4, 5, "jump")]
    assert writes_fingerprint(lake, GAP_WRITES_PREFIX) != quiet
    (record,) = gap_records(lake)
    assert (record["first_id"], record["last_id"], record["writer"]) == (4, 5, "w-1")
