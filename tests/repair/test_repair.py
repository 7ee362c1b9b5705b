"""repair_window against a sandbox with history: the lake ends up holding exactly the exchange's trades.

"Stream" files are put into a temporary lake by the test itself, built from the sandbox's REST
history minus chosen ids; every expectation (ids, exact decimal prices and quantities, µs times,
sides, counts) is computed here from REST rows with ``decimal.Decimal``, never from the repair code.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from include.binance.client import BinanceClient
from include.lake.split import split_batches
from include.lake.store import LocalStore
from include.lake.trades import batch_object, read_table, read_trades, write_trades
from include.repair.compact import NotRepaired, compact_window
from include.repair.ledger import read_report, read_reports, write_report
from include.repair.repair import RepairIncomplete, hour_windows, repair_window
from include.sandbox.faults import FaultSettings
from include.sandbox.server import RunningSandbox, serve_in_thread
from include.timeutil import to_us
from tests.support.exchange import (
    STREAMED_OR_BACKFILLED,
    assert_matches_exchange,
    rest_columns,
    rest_history,
    sandbox_config,
)
from tests.support.net import MICRO, admin
from tests.support.rest_proxy import RestProxy

SYMBOL = "BTCUSDT"
HOUR = timedelta(hours=1)
INGESTED_US = 1_700_000_000_000_000
BACKFILL_KEY = re.compile(
    r"^trades/exchange=binance/symbol=BTCUSDT/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/backfill-(\d+)-(\d+)\.parquet$"
)


# Reading the exchange ------------------------------------------------------------------------------


def in_window(rows: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [row for row in rows if to_us(start) <= row["time"] < to_us(end)]


def first_at_or_after(rows: list[dict[str, Any]], moment: datetime) -> dict[str, Any]:
    return next(row for row in rows if row["time"] >= to_us(moment))


def write_stream(lake: LocalStore, rows: list[dict[str, Any]], missing: set[int] = frozenset(), files: int = 1) -> None:
    """The window's REST rows as ``files`` stream files split by id, each written without ``missing``."""
    for chunk in np.array_split(np.arange(len(rows)), files):
        kept = [rows[i] for i in chunk if rows[i]["id"] not in missing]
        if kept:
            write_trades(lake, rest_columns(SYMBOL, kept), "stream", INGESTED_US)


def lake_rows(lake: LocalStore, start: datetime, end: datetime) -> list[dict[str, Any]]:
    table = read_trades(lake, SYMBOL, to_us(start), to_us(end))
    table = table.set_column(
        table.schema.get_field_index("trade_time"), "trade_time", table["trade_time"].cast(pa.int64())
    )
    return sorted(table.to_pylist(), key=lambda row: row["trade_id"])


def assert_lake_is_rest(lake: LocalStore, start: datetime, end: datetime, rest: list[dict[str, Any]]) -> None:
    """The lake holds exactly the exchange's trades of the window, once each, every field equal."""
    table = read_trades(lake, SYMBOL, to_us(start), to_us(end))
    expected = in_window(rest, start, end)
    ids = table["trade_id"].to_pylist()
    assert len(set(ids)) == len(ids), "a trade is stored twice"
    assert sorted(ids) == [row["id"] for row in expected]
    exchange = {row["id"]: row for row in expected}
    assert_matches_exchange(table, exchange, SYMBOL, STREAMED_OR_BACKFILLED)


def listing(lake: LocalStore, prefix: str) -> dict[str, str]:
    return {info.key: info.etag for info in lake.list(prefix)}


class CountingClient(BinanceClient):
    """The real client, counting the calls per endpoint and the historicalTrades fromIds asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()
        self.from_ids: list[int] = []

    def get(self, endpoint: str, params: dict[str, Any] | None = None) -> Any:
        self.calls[endpoint] += 1
        if endpoint == "historicalTrades":
            self.from_ids.append(int((params or {})["fromId"]))
        return super().get(endpoint, params)


def client_for(sandbox: RunningSandbox, **kwargs: Any) -> CountingClient:
    kwargs.setdefault("weight_limit", 10**6)
    return CountingClient(sandbox.rest_url, **kwargs)


def last_full_hours(count: int) -> list[tuple[datetime, datetime]]:
    """The ``count`` most recent clock hours that are over."""
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return [(this_hour - (count - i) * HOUR, this_hour - (count - i - 1) * HOUR) for i in range(count)]


def backfill_keys(lake: LocalStore) -> list[str]:
    return [key for key in listing(lake, "trades/") if "/backfill-" in key]


def ids_in(lake: LocalStore, key: str) -> list[int]:
    table = read_table(lake.get(key))
    assert set(table["source"].to_pylist()) == {"backfill"}
    return table["trade_id"].to_pylist()


# A market with three hours of history, shared by the module ------------------------------------------


@dataclass
class Market:
    sandbox: RunningSandbox
    rest: list[dict[str, Any]]  # every trade up to module start, from REST
    windows: list[tuple[datetime, datetime]]  # two full clock hours inside the history


@pytest.fixture(scope="module")
def market() -> Iterator[Market]:
    config = sandbox_config(symbols=(SYMBOL,), rate=4.0, history_seconds=3 * 3600, weight_limit=10**6)
    with serve_in_thread(config) as sandbox:
        windows = last_full_hours(2)
        rest = rest_history(sandbox.rest_url, SYMBOL, 1, MICRO, wait_out_errors=True)
        assert rest[0]["time"] < to_us(windows[0][0])  # the history covers both windows
        assert rest[-1]["time"] >= to_us(windows[1][1])
        yield Market(sandbox, rest, windows)


# Gaps of every shape ----------------------------------------------------------------------------------


def test_gaps_at_both_edges_and_inside_a_file(market, tmp_path):
    lake = LocalStore(tmp_path)
    start, end = market.windows[0]
    rows = in_window(market.rest, start, end)
    ids = [row["id"] for row in rows]
    second = int(np.array_split(np.arange(len(ids)), 3)[1][0])  # where the second of three files starts
    missing = {*ids[:5], *ids[-7:], *ids[second + 100 : second + 140], ids[second + 400]}
    write_stream(lake, rows, missing, files=3)
    # The middle gaps lie inside the second file's id range, not between files.
    (middle,) = [key for key in listing(lake, "trades/") if f"/stream-{ids[second]}-" in key]
    assert int(middle.rsplit("-", 1)[1].removesuffix(".parquet")) > ids[second + 400]
    # Neighbours' trades in the lake change nothing about this window.
    neighbours = in_window(market.rest, start - HOUR, start)[-20:] + in_window(market.rest, end, end + HOUR)[:20]
    write_trades(lake, rest_columns(SYMBOL, neighbours), "stream", INGESTED_US)
    streamed = listing(lake, "trades/")
    assert len(streamed) >= 4

    with client_for(market.sandbox) as client:
        report = repair_window(client, lake, SYMBOL, start, end)

    assert report.first_id == ids[0]
    assert report.end_id == first_at_or_after(market.rest, end)["id"]
    assert report.expected == len(ids)
    assert report.present_before == len(ids) - len(missing)
    assert report.filled == len(missing)
    assert report.missing == 0
    assert report.holes == []
    assert report.complete
    assert_lake_is_rest(lake, start, end, market.rest)
    # What was filled is exactly the missing ids, in one backfill file of the window's hour.
    (key,) = report.files
    assert backfill_keys(lake) == [key]
    match = BACKFILL_KEY.match(key)
    assert match is not None, key
    assert match.groups() == (f"{start:%Y-%m-%d}", f"{start:%H}", str(min(missing)), str(max(missing)))
    assert ids_in(lake, key) == sorted(missing)
    # The stream files were not touched.
    assert {k: v for k, v in listing(lake, "trades/").items() if k != key} == streamed
    marker = json.loads(lake.get(f"status/writes/repair-BTCUSDT-{start:%Y%m%dT%H%M}.json"))
    assert marker["keys"] == [key]
    assert list(marker["partitions"]) == [key[: key.rindex("/") + 1]]
    # The ledger says the same.
    stored = read_report(lake, SYMBOL, start)
    assert stored is not None
    assert (stored.expected, stored.present_before, stored.filled, stored.missing, stored.holes) == (
        len(ids),
        len(ids) - len(missing),
        len(missing),
        0,
        [],
    )
    assert (stored.first_id, stored.end_id, stored.files) == (report.first_id, report.end_id, [key])
    assert stored.start == start.isoformat()
    assert stored.end == end.isoformat()


def test_gap_across_the_hour_boundary(market, tmp_path):
    lake = LocalStore(tmp_path)
    (first_start, boundary), (_, last_end) = market.windows
    early = in_window(market.rest, first_start, boundary)
    late = in_window(market.rest, boundary, last_end)
    missing_early = {row["id"] for row in early[-30:]}
    missing_late = {row["id"] for row in late[:40]}
    write_stream(lake, early + late, missing_early | missing_late)  # one write: a file per hour

    windows = hour_windows(first_start, last_end)
    assert windows == market.windows
    with client_for(market.sandbox) as client:
        reports = [repair_window(client, lake, SYMBOL, start, end) for start, end in windows]

    assert [report.filled for report in reports] == [30, 40]
    assert [report.expected for report in reports] == [len(early), len(late)]
    assert [report.present_before for report in reports] == [len(early) - 30, len(late) - 40]
    assert [report.missing for report in reports] == [0, 0]
    assert reports[0].end_id == reports[1].first_id == late[0]["id"]
    for (start, end), report, missing in zip(windows, reports, (missing_early, missing_late), strict=True):
        (key,) = report.files
        match = BACKFILL_KEY.match(key)
        assert match is not None, key
        assert match.groups() == (f"{start:%Y-%m-%d}", f"{start:%H}", str(min(missing)), str(max(missing)))
        assert ids_in(lake, key) == sorted(missing)
        assert_lake_is_rest(lake, start, end, market.rest)
    # The ledger: one record per window, oldest first.
    ledger = read_reports(lake, SYMBOL)
    assert [(r.start, r.expected, r.present_before, r.filled, r.missing, r.holes) for r in ledger] == [
        (first_start.isoformat(), len(early), len(early) - 30, 30, 0, []),
        (boundary.isoformat(), len(late), len(late) - 40, 40, 0, []),
    ]


def test_whole_window_missing_then_idempotent(market, tmp_path):
    lake = LocalStore(tmp_path)
    start, end = market.windows[1]
    expected = in_window(market.rest, start, end)
    with client_for(market.sandbox) as client:
        first = repair_window(client, lake, SYMBOL, start, end)
        assert client.calls["historicalTrades"] == math.ceil(len(expected) / 1000)
    assert first.present_before == 0
    assert first.expected == first.filled == len(expected)
    assert first.missing == 0
    (key,) = first.files
    assert key.endswith(f"/backfill-{expected[0]['id']}-{expected[-1]['id']}.parquet")
    assert BACKFILL_KEY.match(key)
    assert_lake_is_rest(lake, start, end, market.rest)

    trades_before = listing(lake, "trades/")
    markers_before = listing(lake, "status/writes/")
    with client_for(market.sandbox) as client:
        second = repair_window(client, lake, SYMBOL, start, end)
        assert client.calls["historicalTrades"] == 0
    assert listing(lake, "trades/") == trades_before
    assert listing(lake, "status/writes/") == markers_before
    assert second.filled == 0
    assert second.files == []
    assert second.present_before == second.expected == len(expected)
    assert second.missing == 0
    assert read_report(lake, SYMBOL, start).filled == 0  # the ledger holds the latest check


def test_partial_repair_is_idempotent(market, tmp_path):
    lake = LocalStore(tmp_path)
    start, end = market.windows[0]
    rows = in_window(market.rest, start, end)
    write_stream(lake, rows, {row["id"] for row in rows[500:510]}, files=2)
    with client_for(market.sandbox) as client:
        assert repair_window(client, lake, SYMBOL, start, end).filled == 10
        trades_before, markers_before = listing(lake, "trades/"), listing(lake, "status/writes/")
        again = repair_window(client, lake, SYMBOL, start, end)
    assert (again.filled, again.missing, again.files) == (0, 0, [])
    assert listing(lake, "trades/") == trades_before
    assert listing(lake, "status/writes/") == markers_before


def test_window_not_over_yet_raises(market, tmp_path):
    lake = LocalStore(tmp_path)
    now = datetime.now(UTC)
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    for start, end in ((this_hour, this_hour + HOUR), (now - timedelta(minutes=10), now + timedelta(seconds=30))):
        with client_for(market.sandbox) as client, pytest.raises(RepairIncomplete):
            repair_window(client, lake, SYMBOL, start, end)
        assert client.calls["historicalTrades"] == 0
    assert listing(lake, "trades/") == {}
    assert read_reports(lake, SYMBOL) == []


def test_hour_windows_cut_the_ends():
    start = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    end = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
    assert hour_windows(start, end) == [
        (start, datetime(2026, 11, 24, 11, tzinfo=UTC)),
        (datetime(2026, 11, 24, 11, tzinfo=UTC), datetime(2026, 11, 24, 12, tzinfo=UTC)),
        (datetime(2026, 11, 24, 12, tzinfo=UTC), end),
    ]
    assert hour_windows(start, start + timedelta(minutes=5)) == [(start, start + timedelta(minutes=5))]
    aligned = datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert hour_windows(aligned, aligned + 2 * HOUR) == [
        (aligned, aligned + HOUR),
        (aligned + HOUR, aligned + 2 * HOUR),
    ]


# A quiet market: the window's end passed with no trade after it ------------------------------------------


def test_window_over_with_no_trade_after_it(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path)
    with start_sandbox(symbols=(SYMBOL,), rate=0.02, history_seconds=2 * 3600) as sandbox:
        rest = rest_history(sandbox.rest_url, SYMBOL, 1, MICRO, wait_out_errors=True)
        assert len(rest) > 10
        start = datetime.fromtimestamp(rest[0]["time"] // 1_000_000, UTC)
        end = start + timedelta(microseconds=rest[-1]["time"] + 1 - to_us(start))  # just after the latest trade
        time.sleep(0.01)  # the exchange's clock passes the end
        with client_for(sandbox) as client:
            report = repair_window(client, lake, SYMBOL, start, end)
    assert report.first_id == rest[0]["id"]
    assert report.end_id == rest[-1]["id"] + 1
    assert report.filled == report.expected == len(rest)
    assert_lake_is_rest(lake, start, end, rest)


# Exchange-side holes ----------------------------------------------------------------------------------


def test_exchange_side_holes_are_recorded_and_not_asked_for_again(market, start_sandbox, tmp_path):
    # The same market (seed, symbol, rate) has the same ids: place the holes near the middle of the
    # older window, learnt from the module's sandbox, in a second sandbox of that market.
    start, end = market.windows[0]
    window_ids = [row["id"] for row in in_window(market.rest, start, end)]
    hole = window_ids[len(window_ids) // 2]
    holes = [hole, hole + 1, hole + 500]
    with start_sandbox(
        symbols=(SYMBOL,), rate=4.0, history_seconds=3 * 3600, holes={SYMBOL: frozenset(holes)}, weight_limit=10**6
    ) as sandbox:
        rest = rest_history(sandbox.rest_url, SYMBOL, 1, MICRO, wait_out_errors=True)
        rest_ids = {row["id"] for row in rest}
        assert not rest_ids & set(holes)
        rows = in_window(rest, start, end)
        ids = [row["id"] for row in rows]
        assert ids[0] < hole, "the holes fall outside the window"
        assert hole + 500 < ids[-1], "the holes fall outside the window"
        # The lake lacks a run around the first two holes; next to the third it lacks nothing else.
        around = set(range(hole - 3, hole + 5)) & rest_ids
        assert len(around) == 6
        lake = LocalStore(tmp_path / "partial")
        write_stream(lake, rows, around, files=2)
        with client_for(sandbox) as client:
            report = repair_window(client, lake, SYMBOL, start, end)
            assert set(client.from_ids) <= {hole - 3, hole + 2, hole + 500}
        assert report.holes == holes
        assert report.missing == 0
        assert report.filled == 6
        assert report.expected == len(ids) + 3  # the id range spans the holes
        assert report.present_before == len(ids) - 6
        assert read_report(lake, SYMBOL, start).holes == holes
        assert_lake_is_rest(lake, start, end, rest)

        with client_for(sandbox) as client:
            again = repair_window(client, lake, SYMBOL, start, end)
            assert client.calls["historicalTrades"] == 0  # the holes are on record: nothing to fetch
        assert (again.holes, again.missing, again.filled, again.files) == (holes, 0, 0, [])

        # From an empty lake, paging straight through the holes finds them too.
        empty = LocalStore(tmp_path / "empty")
        with client_for(sandbox) as client:
            whole = repair_window(client, empty, SYMBOL, start, end)
        assert (whole.holes, whole.missing, whole.filled, whole.present_before) == (holes, 0, len(ids), 0)
        assert_lake_is_rest(empty, start, end, rest)
    assert read_reports(empty, SYMBOL)[0].holes == holes


# A tight weight limit and a flaky exchange --------------------------------------------------------------


def test_whole_window_under_a_low_weight_limit_and_server_errors(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path)
    limit, window = 250, 2.0
    faults = FaultSettings(rest_error_rate=0.2)
    ((start, end),) = last_full_hours(1)
    with start_sandbox(
        symbols=(SYMBOL,),
        rate=3.0,
        history_seconds=2 * 3600,
        weight_limit=limit,
        weight_window_seconds=window,
        faults=faults,
    ) as sandbox:
        # The expectations first (this reader waits out its own 429s), then a fresh window for the client.
        first = rest_history(sandbox.rest_url, SYMBOL, 1, MICRO, until_us=to_us(end), wait_out_errors=True)
        rows = in_window(first, start, end)
        counts_before = admin(sandbox)["rest"]
        now = time.time()
        time.sleep((math.floor(now / window) + 1) * window - now + 0.05)
        with client_for(sandbox, weight_limit=limit, max_attempts=30) as client:
            client.budget.window_seconds = window  # the sandbox's short window instead of Binance's minute
            client.budget.reserve = 50
            report = repair_window(client, lake, SYMBOL, start, end)
            stats, waited = client.stats, client.budget.waited_seconds
        counts_after = admin(sandbox)["rest"]
    assert report.missing == 0
    assert report.filled == report.expected == len(rows)
    assert_lake_is_rest(lake, start, end, first)
    assert stats.server_errors > 0
    assert waited > 0  # the repair needed more than one window's weight: the budget paced it
    assert counts_after["418"] == 0
    assert counts_after["429"] == counts_before["429"]  # the client itself never broke the limit
    assert stats.rate_limited == 0


# REST rows outside the trade contract: refused by the stream's rules, recorded, never cast ---------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("price", "60000.123456789", "price has more than 8 decimals"),
        ("price", "99999999999.50000000", "price is beyond the scale"),  # 11 whole digits: past int64 units
        ("qty", "0.00000000", "quantity is zero"),
        ("price", "-1.00000000", "price is negative"),
        ("qty", 0.5, "invalid trade row"),  # a JSON number: a float, never a price
    ],
    ids=["too-many-decimals", "out-of-range", "zero-quantity", "negative", "a-float"],
)
def test_a_rest_row_outside_the_contract_is_refused_recorded_and_fetched_again(market, tmp_path, field, value, reason):
    lake = LocalStore(tmp_path)
    start, end = market.windows[0]
    rows = in_window(market.rest, start, end)
    bad_id = rows[len(rows) // 2]["id"]

    def spoil(endpoint: str, params: dict[str, str], body: Any) -> Any:
        if endpoint != "historicalTrades":
            return body
        return [{**row, field: value} if row["id"] == bad_id else row for row in body]

    with (
        RestProxy(market.sandbox.rest_url, spoil) as proxy,
        CountingClient(proxy.url, weight_limit=10**6) as client,
        pytest.raises(RepairIncomplete) as caught,
    ):
        repair_window(client, lake, SYMBOL, start, end)
    message = str(caught.value)
    assert reason in message
    assert json.dumps(value) in message  # the refused value, named as REST sent it
    assert "\n" not in message

    # The ledger says what is missing and why; the refused id is not a hole and is not in the lake.
    report = read_report(lake, SYMBOL, start)
    assert report is not None
    assert not report.complete
    assert (report.missing, report.holes, report.filled) == (1, [], len(rows) - 1)
    (refused,) = report.refused
    assert refused["id"] == bad_id
    assert reason in refused["reason"]
    assert json.loads(refused["raw"])[field] == value
    stored = [row["trade_id"] for row in lake_rows(lake, start, end)]
    assert stored == [row["id"] for row in rows if row["id"] != bad_id]

    # The next run, against an exchange that sends the row well, asks for that one id and completes.
    with client_for(market.sandbox) as client:
        again = repair_window(client, lake, SYMBOL, start, end)
        assert client.from_ids == [bad_id]
    assert (again.complete, again.filled, again.refused, again.holes) == (True, 1, [], [])
    assert_lake_is_rest(lake, start, end, market.rest)


# A fill REST cannot complete yet: reported by the ledger, completed by the next run ----------------------


def test_a_fill_that_rest_cannot_complete_yet_stays_missing_and_the_next_run_completes_it(market, tmp_path):
    lake = LocalStore(tmp_path)
    start, end = market.windows[1]
    rows = in_window(market.rest, start, end)
    ids = [row["id"] for row in rows]
    streamed = set(ids[: len(ids) // 4])  # the stream saw the first quarter of the window
    write_stream(lake, rows, set(ids) - streamed)
    lag_from = ids[len(ids) * 3 // 4]  # REST's history has not caught up past this id yet

    def lagging(endpoint: str, params: dict[str, str], body: Any) -> Any:
        return [row for row in body if row["id"] < lag_from] if endpoint == "historicalTrades" else body

    with (
        RestProxy(market.sandbox.rest_url, lagging) as proxy,
        CountingClient(proxy.url, weight_limit=10**6) as client,
        pytest.raises(RepairIncomplete) as caught,
    ):
        repair_window(client, lake, SYMBOL, start, end)
    not_yet = [i for i in ids if i >= lag_from]
    assert f"missing {len(not_yet)}" in str(caught.value)

    # The ledger: what was filled, what is still missing; the ids REST did not send are not holes.
    report = read_report(lake, SYMBOL, start)
    assert report is not None
    assert not report.complete
    assert report.expected == len(ids)
    assert report.present_before == len(streamed)
    assert report.filled == len(ids) - len(streamed) - len(not_yet)
    assert report.missing == len(not_yet)
    assert report.holes == []
    assert [row["trade_id"] for row in lake_rows(lake, start, end)] == [i for i in ids if i < lag_from]

    # REST has caught up: the next run fetches exactly what is still missing, and the window is complete.
    with client_for(market.sandbox) as client:
        done = repair_window(client, lake, SYMBOL, start, end)
        assert client.from_ids[0] == lag_from
    assert done.complete
    assert (done.filled, done.missing, done.holes, done.refused) == (len(not_yet), 0, [], [])
    assert done.present_before == len(ids) - len(not_yet)
    assert read_report(lake, SYMBOL, start).complete
    assert_lake_is_rest(lake, start, end, market.rest)  # every id of the window, once


# Compaction of a repaired hour ---------------------------------------------------------------------------


def test_a_repaired_hour_is_compacted_and_the_repair_still_sees_every_id(market, tmp_path):
    lake = LocalStore(tmp_path)
    start, end = market.windows[0]
    rows = in_window(market.rest, start, end)
    write_stream(lake, rows, {row["id"] for row in rows[100:120]}, files=40)
    with pytest.raises(NotRepaired, match="no repair report"):
        compact_window(lake, SYMBOL, start, end)
    with client_for(market.sandbox) as client:
        assert repair_window(client, lake, SYMBOL, start, end).filled == 20

    result = compact_window(lake, SYMBOL, start, end)

    (key,) = listing(lake, "trades/")
    assert key == result.compacted_key
    assert "/compact-" in key
    assert (result.files_before, result.trades) == (41, len(rows))
    assert_lake_is_rest(lake, start, end, market.rest)
    with client_for(market.sandbox) as client:
        again = repair_window(client, lake, SYMBOL, start, end)
        assert client.calls["historicalTrades"] == 0
    assert (again.present_before, again.filled, again.missing) == (len(rows), 0, 0)
    assert compact_window(lake, SYMBOL, start, end).compacted_key is None


def test_an_hour_the_repair_left_incomplete_or_cut_is_not_compacted(market, tmp_path):
    lake = LocalStore(tmp_path)
    start, end = market.windows[0]
    rows = in_window(market.rest, start, end)
    write_stream(lake, rows, {rows[7]["id"]}, files=3)
    with client_for(market.sandbox) as client:
        report = repair_window(client, lake, SYMBOL, start, end)
    report.missing, report.end = 1, end.isoformat()
    write_report(lake, report, start)  # as a fill REST could not finish leaves it
    before = listing(lake, "trades/")

    with pytest.raises(NotRepaired, match="missing 1"):
        compact_window(lake, SYMBOL, start, end)
    with pytest.raises(NotRepaired, match="not one clock hour"):
        compact_window(lake, SYMBOL, start, end - timedelta(minutes=20))
    assert listing(lake, "trades/") == before


def test_an_hour_with_a_batch_the_split_has_not_taken_yet_waits_for_it_then_compacts(market, tmp_path):
    """A batch that came after the split (a spool drained late): the repair counts its ids, compaction
    waits for the next split to turn it into the symbol's file, as it checks files, not batches."""
    lake = LocalStore(tmp_path)
    start, end = market.windows[0]
    rows = in_window(market.rest, start, end)
    late = rows[100:120]
    write_stream(lake, rows, {row["id"] for row in late}, files=4)
    key, data = batch_object([rest_columns(SYMBOL, late)], "stream", INGESTED_US, "stream-late", INGESTED_US)
    lake.put(key, data)
    with client_for(market.sandbox) as client:
        assert repair_window(client, lake, SYMBOL, start, end).filled == 0  # the batch's ids are there

    with pytest.raises(NotRepaired, match="stream batches not split yet"):
        compact_window(lake, SYMBOL, start, end)
    assert key in listing(lake, "trades/")

    split_batches(lake, to_us(end))
    result = compact_window(lake, SYMBOL, start, end)

    assert list(listing(lake, "trades/")) == [result.compacted_key]
    assert_lake_is_rest(lake, start, end, market.rest)
