"""The live fill: the gaps the stream recorded are fetched from REST, exactly, once.

Gaps are recorded as the stream records them (a real worker against a real sandbox, or the same
``Gap`` records and gap marker the batcher writes); the fill runs against the sandbox's REST over
real sockets, and the lake is judged against the exchange's own history.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import include.repair.live
from include.binance.client import BinanceClient
from include.ingest.gaps import Gap
from include.lake.keys import (
    GAP_FILLS_PREFIX,
    GAP_WRITES_PREFIX,
    TRADES_PREFIX,
    WRITES_PREFIX,
    gap_fill_key,
    marker_key,
)
from include.lake.markers import PARTITION_MEMORY, MarkerWriter, WriteMarker
from include.lake.store import LocalStore
from include.lake.trades import batch_object, read_trades, write_trades
from include.repair.boundary import start_boundary
from include.repair.live import FillSummary, chunks, fill_pending, pending_gaps
from include.repair.repair import to_contract
from include.sandbox.faults import FaultSettings
from include.timeutil import now_us
from include.warehouse.discover import discover
from tests.support.exchange import STREAMED_OR_BACKFILLED, assert_matches_exchange, history, rest_history, stream_for
from tests.support.gaps import fill_records, gap_records, ids_of, lake_id_set, objects
from tests.support.net import MICRO
from tests.support.rest_proxy import RestProxy

SYMBOL = "BTCUSDT"
FILLER = "fill-test"
# The fill record's fields, as the warehouse loads them (docs/architecture.md, "The live edge").
FILL_FIELDS = {"symbol", "first_id", "last_id", "since", "filled", "holes", "missing", "files", "refused", "checked_at"}


class CountingClient(BinanceClient):
    """The real client, noting the historicalTrades fromIds it asks for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.from_ids: list[int] = []

    def get(self, endpoint: str, params: dict[str, Any] | None = None) -> Any:
        if endpoint == "historicalTrades":
            self.from_ids.append(int((params or {})["fromId"]))
        return super().get(endpoint, params)


def fill(rest_url: str, lake: LocalStore, writer: str = FILLER) -> tuple[FillSummary, CountingClient]:
    with CountingClient(rest_url) as client:
        return fill_pending(client, lake, writer), client


def record_gap(lake: LocalStore, gap: Gap, writer: str = "stream-test") -> None:
    """A gap as the stream records it: its record, then its writer's gap marker."""
    lake.put(gap.key(writer), gap.to_json(writer))
    MarkerWriter(lake, writer, GAP_WRITES_PREFIX).mark([gap.key(writer)])


def write_rows(lake: LocalStore, rows: list[dict[str, Any]], source: str = "stream") -> list[str]:
    columns, refused = to_contract(SYMBOL, rows)
    assert refused == []
    return write_trades(lake, columns, source, now_us())


def settled(lake: LocalStore) -> dict[str, str]:
    """Everything a fill may write: trade files, fill records, write markers."""
    return {**objects(lake, TRADES_PREFIX), **objects(lake, GAP_FILLS_PREFIX), **objects(lake, WRITES_PREFIX)}


def assert_lake_holds_every_id_once(lake: LocalStore, rest_url: str, first_id: int, last_id: int) -> None:
    """From ``first_id`` to ``last_id`` the lake holds the exchange's trades, each once, value for value."""
    truth = history(rest_url, SYMBOL, first_id, last_id)
    table = read_trades(lake, SYMBOL)
    ids = table["trade_id"].to_pylist()
    in_range = [i for i in ids if first_id <= i <= last_id]
    assert [i for i, n in Counter(in_range).items() if n > 1] == [], "ids stored twice"
    assert sorted(in_range) == sorted(truth), sorted(set(truth) - set(in_range))[:20]
    assert_matches_exchange(
        table.filter([first_id <= i <= last_id for i in ids]), truth, SYMBOL, STREAMED_OR_BACKFILLED
    )


# The fill's pieces --------------------------------------------------------------------------------


def test_chunks_cut_ranges_to_the_size_in_order():
    assert list(chunks([(0, 3), (10, 12)], 2)) == [[(0, 2)], [(2, 3), (10, 11)], [(11, 12)]]
    assert list(chunks([(5, 9)], 4)) == [[(5, 9)]]
    assert list(chunks([], 4)) == []


def test_pending_gaps_come_from_the_gap_markers_once_per_gap_and_not_once_filled(tmp_path):
    lake = LocalStore(tmp_path)
    now = now_us()
    a = Gap(SYMBOL, 10, 12, "jump", now, now)
    record_gap(lake, a, "stream-1")
    record_gap(lake, a, "stream-2")  # two overlapping stream windows saw the same gap
    record_gap(lake, Gap("ETHUSDT", 5, 5, "reconnect", now, now), "stream-2")
    pending = pending_gaps(lake)
    assert [(p.gap.symbol, p.gap.first_id, p.gap.last_id) for p in pending] == [("BTCUSDT", 10, 12), ("ETHUSDT", 5, 5)]
    assert [p.gap.symbol for p in pending_gaps(lake, {"ETHUSDT"})] == ["ETHUSDT"]
    # A gap record that no marker names is not looked for: the listing follows the markers.
    lake.put(Gap("XRPUSDT", 50, 51, "jump", now, now).key("stream-3"), b"{}")
    assert len(pending_gaps(lake)) == 2
    # A complete fill record ends a gap; an incomplete one keeps it pending.
    body = {"symbol": SYMBOL, "first_id": 10, "last_id": 12, "since": None, "filled": 3, "holes": [], "missing": 0}
    lake.put(pending[0].fill_key, json.dumps(body | {"files": [], "refused": [], "checked_at": ""}).encode())
    assert [p.gap.symbol for p in pending_gaps(lake)] == ["ETHUSDT"]
    lake.put(
        pending[0].fill_key, json.dumps(body | {"missing": 1, "files": [], "refused": [], "checked_at": ""}).encode()
    )
    assert len(pending_gaps(lake)) == 2


def test_a_gap_marker_silent_for_two_days_names_nothing_and_is_pruned(tmp_path):
    lake = LocalStore(tmp_path)
    now, days_ago = now_us(), now_us() - 3 * 86_400_000_000
    record_gap(lake, Gap(SYMBOL, 10, 12, "jump", days_ago, days_ago), "stream-old")  # a partition of 3 days ago
    old = (datetime.now(UTC) - PARTITION_MEMORY - timedelta(minutes=1)).isoformat()
    marker = WriteMarker.from_json(lake.get(marker_key("stream-old", GAP_WRITES_PREFIX)))
    stale = WriteMarker(marker.writer, old, marker.keys, dict.fromkeys(marker.partitions, old))
    lake.put(marker_key("stream-old", GAP_WRITES_PREFIX), stale.to_json())
    record_gap(lake, Gap(SYMBOL, 20, 20, "jump", now, now), "stream-new")
    assert [p.gap.first_id for p in pending_gaps(lake)] == [20]
    summary = fill_pending(None, lake, FILLER, {"ETHUSDT"})  # nothing pending for ETHUSDT: no REST asked
    assert summary.gaps == 0
    assert [info.key for info in lake.list(GAP_WRITES_PREFIX)] == [marker_key("stream-new", GAP_WRITES_PREFIX)]


# Against the sandbox ------------------------------------------------------------------------------


@pytest.mark.slow
def test_streamed_gaps_are_filled_exactly_and_a_second_run_writes_nothing(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    faults = FaultSettings(skip_fraction=0.05, drop_connections_every=2.0)
    with start_sandbox(symbols=(SYMBOL,), rate=50.0, history_seconds=60, faults=faults) as sandbox:
        with BinanceClient(sandbox.rest_url) as boundary_client:
            boundary = functools.partial(start_boundary, boundary_client, lake)
            stream_for(lake, sandbox.ws_url, 8.0, (SYMBOL,), start_boundary=boundary)
        gaps = gap_records(lake, SYMBOL)
        streamed = lake_id_set(lake, SYMBOL, "stream")
        assert {g["kind"] for g in gaps} >= {"start", "jump"}  # and a reconnect's, when a cut lost a trade
        (start,) = [g for g in gaps if g["kind"] == "start"]
        first_id, last_id = start["first_id"], max(streamed)
        cursor = {info.key: info.etag for info in lake.list(WRITES_PREFIX)}  # the warehouse loaded the stream

        summary, client = fill(sandbox.rest_url, lake)
        assert_lake_holds_every_id_once(lake, sandbox.rest_url, first_id, last_id)
        backfilled = lake_id_set(lake, SYMBOL, "backfill")
        assert backfilled == ids_of(gaps)  # exactly the recorded ids, nothing streamed again
        assert not backfilled & streamed
        assert min(client.from_ids) == first_id

        after_first = settled(lake)
        again, client = fill(sandbox.rest_url, lake)
        assert settled(lake) == after_first  # nothing written twice
        assert (again.gaps, client.from_ids, client.stats.requests) == (0, [], 0)

    # One fill record per gap, each complete, its files the backfill files that hold its ids.
    fills = {(f["first_id"], f["last_id"]): f for f in fill_records(lake, SYMBOL)}
    assert sorted(fills) == sorted((g["first_id"], g["last_id"]) for g in gaps)
    assert (summary.gaps, summary.filled, summary.missing, summary.incomplete) == (len(gaps), len(backfilled), 0, 0)
    for gap in gaps:
        record = fills[(gap["first_id"], gap["last_id"])]
        assert set(record) - {"key"} == FILL_FIELDS
        day = datetime.strptime(gap["key"].split("/date=")[1][:10], "%Y-%m-%d")
        assert record["key"] == gap_fill_key(SYMBOL, day, gap["first_id"], gap["last_id"])  # the gap's date
        assert (record["since"], record["missing"], record["holes"], record["refused"]) == (gap["since"], 0, [], [])
        assert record["filled"] == gap["last_id"] - gap["first_id"] + 1
        assert all("/backfill-" in key for key in record["files"])
    files = sorted(key for f in fills.values() for key in f["files"])
    assert files == sorted(summary.files)
    # Announced by the fill's own write marker, so the warehouse's next load finds every backfill file.
    marker = json.loads(lake.get(marker_key(FILLER)))
    assert marker["writer"] == FILLER
    found = discover(lake, cursor)
    assert set(files) <= {info.key for info in found.files}
    assert all(info.key.startswith(TRADES_PREFIX) and info.key.endswith(".parquet") for info in found.files)
    assert all(info.key.endswith(".parquet") for info in discover(lake, None).files)  # gap JSON is never a trade


def trades_around_now(rest_url: str) -> list[dict[str, Any]]:
    """A few hundred of the exchange's trades from about a minute ago."""
    with BinanceClient(rest_url) as client:
        first = client.first_trade_id_at_or_after(SYMBOL, now_us() - 60_000_000)
    assert first is not None
    return rest_history(rest_url, SYMBOL, first[0], MICRO, to_id=first[0] + 300)


@pytest.mark.slow
def test_exchange_side_holes_are_recorded_once_and_never_asked_for_again(start_sandbox, tmp_path):
    lake = LocalStore(tmp_path / "lake")
    settings = {"symbols": (SYMBOL,), "rate": 20.0, "history_seconds": 600, "seed": 7}
    with start_sandbox(**settings) as plain:  # the same market has the same ids: learn where to put holes
        rows = trades_around_now(plain.rest_url)
    holes = [rows[100]["id"], rows[101]["id"], rows[150]["id"]]
    with start_sandbox(**settings, holes={SYMBOL: frozenset(holes)}) as sandbox:
        rows = [row for row in rows if row["id"] not in holes]
        before, gap_rows, after = rows[:50], rows[50:250], rows[250:]
        write_rows(lake, before + after)  # the stream had these; it missed what lies between
        gap = Gap(SYMBOL, before[-1]["id"] + 1, after[0]["id"] - 1, "jump", after[0]["time"], now_us())
        record_gap(lake, gap)

        summary, _ = fill(sandbox.rest_url, lake)
        assert (summary.gaps, summary.filled, summary.holes, summary.missing) == (1, len(gap_rows), 3, 0)
        (record,) = fill_records(lake)
        assert (record["holes"], record["missing"], record["filled"]) == (holes, 0, len(gap_rows))
        assert_lake_holds_every_id_once(lake, sandbox.rest_url, before[0]["id"], after[-1]["id"])

        after_first = settled(lake)
        again, client = fill(sandbox.rest_url, lake)
        assert (again.gaps, client.stats.requests) == (0, 0)
        assert settled(lake) == after_first


@pytest.mark.slow
def test_a_fill_rest_cannot_finish_yet_stays_pending_and_the_next_run_fetches_only_the_rest(
    start_sandbox, tmp_path, monkeypatch
):
    monkeypatch.setattr(include.repair.live, "FILL_CHUNK_IDS", 120)  # several chunks, each written as it comes
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=20.0, history_seconds=600) as sandbox:
        rows = trades_around_now(sandbox.rest_url)
        before, gap_rows, after = rows[:20], rows[20:280], rows[280:]
        write_rows(lake, before + after)
        record_gap(lake, Gap(SYMBOL, gap_rows[0]["id"], gap_rows[-1]["id"], "restart", after[0]["time"], now_us()))
        cap = gap_rows[200]["id"]  # REST's history ends here for now: it lags behind the stream

        def lagging(endpoint: str, query: dict[str, str], body: Any) -> Any:
            return [row for row in body if row["id"] < cap] if endpoint == "historicalTrades" else body

        with RestProxy(sandbox.rest_url, lagging) as proxy:
            first, client = fill(proxy.url, lake)
            assert (first.gaps, first.filled, first.incomplete, first.missing) == (1, 200, 1, 60)
            (record,) = fill_records(lake)
            assert (record["filled"], record["missing"], record["holes"]) == (200, 60, [])
            assert len(record["files"]) >= 2  # written chunk by chunk
            assert len(pending_gaps(lake)) == 1

            proxy.rewrite = None  # REST has caught up
            second, client = fill(proxy.url, lake)
        assert (second.gaps, second.filled, second.incomplete) == (1, 60, 0)
        assert min(client.from_ids) == cap  # only what was still missing
        (record,) = fill_records(lake)
        assert (record["filled"], record["missing"]) == (260, 0)
        assert set(second.files) < set(record["files"])  # the files of both runs
        assert_lake_holds_every_id_once(lake, sandbox.rest_url, before[0]["id"], after[-1]["id"])
        assert pending_gaps(lake) == []


def test_ids_of_a_gap_another_writer_holds_in_a_stream_batch_are_not_fetched_again(start_sandbox, tmp_path):
    """Two writers overlap: one missed ids the other flushed in a batch the split has not reached yet."""
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=(SYMBOL,), rate=20.0, history_seconds=600) as sandbox:
        rows = trades_around_now(sandbox.rest_url)
        before, gap_rows, after = rows[:20], rows[20:120], rows[120:]
        write_rows(lake, before + after)
        held, _ = to_contract(SYMBOL, gap_rows[30:70])  # the other writer's flush, with ETHUSDT's trades beside
        other, _ = to_contract("ETHUSDT", [{**row, "id": row["id"] + 7} for row in gap_rows[:5]])
        key, data = batch_object([held, other], "stream", now_us(), "stream-other", now_us())
        lake.put(key, data)
        record_gap(lake, Gap(SYMBOL, gap_rows[0]["id"], gap_rows[-1]["id"], "jump", after[0]["time"], now_us()))

        summary, _ = fill(sandbox.rest_url, lake)

        assert (summary.gaps, summary.filled, summary.missing) == (1, 60, 0)
        backfilled = lake_id_set(lake, SYMBOL, "backfill")
        assert backfilled == {row["id"] for row in gap_rows[:30] + gap_rows[70:]}  # not the 40 in the batch
        assert_lake_holds_every_id_once(lake, sandbox.rest_url, before[0]["id"], after[-1]["id"])
