"""Micro-batches over a local lake: frames in, one Parquet batch per flush, quarantine and status out."""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from include.ingest.batcher import MicroBatcher
from include.ingest.parse import Control
from include.lake.heartbeats import MAX_RECENT_RECONNECTS, RECONNECT_WINDOW, read_status
from include.lake.markers import writes_fingerprint
from include.lake.store import LakeError, LocalStore
from include.lake.trades import read_symbol_rows, read_table, read_trades
from include.timeutil import now_us, to_us

SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT"})
WRITER = "stream-test-writer"


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> int:
    return to_us(datetime(2026, 11, 24, hour, minute, second, micro, tzinfo=UTC))


def trade(symbol: str, trade_id: int, time_us: int, price: str = "100.00000000", qty: str = "0.50000000", maker=False):
    body = {
        "stream": f"{symbol.lower()}@trade",
        "data": {
            "e": "trade",
            "E": time_us + 17,
            "s": symbol,
            "t": trade_id,
            "p": price,
            "q": qty,
            "T": time_us,
            "m": maker,
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def flush(batcher: MicroBatcher, frames: list[bytes]):
    for raw in frames:
        assert batcher.add(raw) is None
    return batcher.write(batcher.take())


def batch_ids(lake, result) -> dict[str, list[int]]:
    """The ids per symbol of the one batch a flush wrote (every symbol of the flush in one object)."""
    (batch,) = [k for k in result.keys if k.startswith("trades/")]
    assert batch.startswith("trades/exchange=binance/batch/"), batch
    table = read_table(lake.get(batch))
    ids: dict[str, list[int]] = {}
    for symbol, trade_id in zip(table["symbol"].to_pylist(), table["trade_id"].to_pylist(), strict=True):
        ids.setdefault(symbol, []).append(trade_id)
    return ids


def marker(lake) -> dict:
    (info,) = lake.list("status/writes/")
    return json.loads(lake.get(info.key))


@pytest.fixture
def lake(tmp_path):
    return LocalStore(tmp_path / "lake")


def test_two_symbols_across_an_hour_boundary(lake):
    batcher = MicroBatcher(lake, SYMBOLS, WRITER)
    frames = [
        trade("BTCUSDT", 1001, at(12, 59, 59, 500_000), "60000.10000000", "0.00100000", True),
        trade("ETHUSDT", 501, at(12, 59, 58), "4000.01000000", "1.00000000"),
        trade("BTCUSDT", 1003, at(13, 0, 0, 0), "60000.30000000", "0.00300000"),
        trade("BTCUSDT", 1002, at(12, 59, 59, 999_999), "60000.20000000", "0.00200000"),
        trade("ETHUSDT", 502, at(13, 0, 1), "4000.02000000", "2.00000000"),
        trade("ETHUSDT", 503, at(13, 0, 2), "4000.03000000", "3.00000000"),
        trade("BTCUSDT", 1004, at(13, 30), "60000.40000000", "0.00400000"),
    ]
    result = flush(batcher, frames)

    (only,) = [info.key for info in lake.list("trades/")]  # one object for the flush, whatever the symbols
    assert result.keys == [only]
    first_us, taken = at(12, 59, 58), re.escape(WRITER)
    assert re.fullmatch(
        rf"trades/exchange=binance/batch/date=2026-11-24/hour=12/{first_us}_{at(13, 30)}_\d+_{taken}\.parquet", only
    )
    assert (result.trades_written, result.duplicates, result.quarantined) == (7, 0, 0)
    table = read_table(lake.get(only))
    assert list(zip(table["symbol"].to_pylist(), table["trade_id"].to_pylist(), strict=True)) == [
        ("BTCUSDT", 1001),
        ("BTCUSDT", 1002),
        ("BTCUSDT", 1003),
        ("BTCUSDT", 1004),
        ("ETHUSDT", 501),
        ("ETHUSDT", 502),
        ("ETHUSDT", 503),
    ]
    metadata = pq.ParquetFile(io.BytesIO(lake.get(only))).metadata  # a row group per symbol: read on its own
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [4, 3]
    assert read_symbol_rows(lake, only, "ETHUSDT", ["trade_id"])["trade_id"].to_pylist() == [501, 502, 503]
    hour_12, hour_13 = at(12), at(13)
    assert read_trades(lake, "BTCUSDT", hour_12, hour_13)["trade_id"].to_pylist() == [1001, 1002]
    assert read_trades(lake, "ETHUSDT", hour_13, at(14))["trade_id"].to_pylist() == [502, 503]
    btc12 = read_trades(lake, "BTCUSDT", hour_12, hour_13)
    assert btc12["price"].to_pylist() == [Decimal("60000.1"), Decimal("60000.2")]
    assert btc12["quote_quantity"].to_pylist() == [
        Decimal("60000.1") * Decimal("0.001"),
        Decimal("60000.2") * Decimal("0.002"),
    ]
    assert btc12["is_buyer_maker"].to_pylist() == [True, False]
    assert set(btc12["source"].to_pylist()) == {"stream"}
    assert batcher.stats.received == 7
    assert batcher.stats.written == 7
    assert batcher.stats.batches == 1


def test_duplicates_inside_a_batch_are_dropped_and_counted(lake):
    batcher = MicroBatcher(lake, SYMBOLS, WRITER)
    frames = [
        trade("BTCUSDT", 1, at(13, 0, 1), "1.00000000"),
        trade("BTCUSDT", 2, at(13, 0, 2), "2.00000000"),
        trade("BTCUSDT", 2, at(13, 0, 2), "2.00000000"),
        trade("BTCUSDT", 3, at(13, 0, 3), "3.00000000"),
        trade("BTCUSDT", 1, at(13, 0, 1), "1.00000000"),
        trade("BTCUSDT", 2, at(13, 0, 2), "2.00000000"),
    ]
    result = flush(batcher, frames)
    assert batch_ids(lake, result) == {"BTCUSDT": [1, 2, 3]}
    assert (result.trades_written, result.duplicates) == (3, 3)
    assert batcher.stats.duplicates == 3
    assert batcher.stats.written == 3
    table = read_table(lake.get(result.keys[0]))
    assert table["price"].to_pylist() == [Decimal(1), Decimal(2), Decimal(3)]


def test_duplicates_across_batches_are_dropped(lake):
    """Two connections overlap during a handover: the second repeats ids the first already wrote."""
    batcher = MicroBatcher(lake, SYMBOLS, WRITER)
    first = flush(batcher, [trade("BTCUSDT", i, at(13, 0, i)) for i in range(1, 6)])
    assert batch_ids(lake, first) == {"BTCUSDT": [1, 2, 3, 4, 5]}
    second = flush(batcher, [trade("BTCUSDT", i, at(13, 0, i)) for i in range(4, 9)])
    assert batch_ids(lake, second) == {"BTCUSDT": [6, 7, 8]}
    assert (second.trades_written, second.duplicates) == (3, 2)
    assert sorted(read_trades(lake, "BTCUSDT")["trade_id"].to_pylist()) == list(range(1, 9))  # each id once
    only_old = flush(batcher, [trade("BTCUSDT", i, at(13, 0, i)) for i in (2, 7, 3)])
    assert only_old.keys == []
    assert (only_old.trades_written, only_old.duplicates) == (0, 3)
    assert batcher.stats.duplicates == 5
    assert len(list(lake.list("trades/"))) == 2
    # the ids of one symbol never hide another symbol's
    other = flush(batcher, [trade("ETHUSDT", i, at(13, 0, i)) for i in (1, 2)])
    assert batch_ids(lake, other) == {"ETHUSDT": [1, 2]}
    assert other.duplicates == 0


def test_malformed_frames_go_to_quarantine_with_raw_text_and_reason(lake):
    batcher = MicroBatcher(lake, SYMBOLS, WRITER)
    missing = json.loads(trade("BTCUSDT", 9, at(13)))
    del missing["data"]["q"]
    bad = {
        b'{"stream":"btcusdt@trade","data":{"e":"trade"': "malformed JSON",
        json.dumps(missing).encode(): "invalid trade message",
        trade("BTCUSDT", 10, at(13), price="0.00000000"): "price is zero",
        trade("BTCUSDT", 11, at(13), price="1.000000001"): "price has more than 8 decimals",
        trade("ETHUSDT", 12, at(13), qty="0"): "quantity is zero",
        trade("DOGEUSDT", 13, at(13)): "unknown symbol",
        '{"stream":"btcusdt@trade","note":"café ☕"}'.encode(): "invalid trade message",
    }
    good = [trade("BTCUSDT", 20, at(13, 1)), trade("ETHUSDT", 21, at(13, 2))]
    frames = [good[0], *bad, good[1]]
    before = time.time_ns() // 1000
    result = flush(batcher, frames)
    after = time.time_ns() // 1000
    assert result.quarantined == len(bad)
    assert result.trades_written == 2
    (quarantine_key,) = [k for k in result.keys if k.startswith("quarantine/")]
    match = re.fullmatch(
        r"quarantine/exchange=binance/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/stream-test-writer-(\d+)-(\d+)\.jsonl",
        quarantine_key,
    )
    assert match is not None, quarantine_key
    received_us = int(match.group(3))
    assert before <= received_us <= after
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=received_us)
    assert (match.group(1), match.group(2)) == (f"{moment:%Y-%m-%d}", f"{moment:%H}")
    assert int(match.group(4)) == len(bad)
    lines = lake.get(quarantine_key).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(bad)
    by_raw = {record["raw"]: record for record in records}
    assert set(by_raw) == {raw.decode() for raw in bad}  # the exact raw text
    for raw, kind in bad.items():
        record = by_raw[raw.decode()]
        assert record["reason"] == kind or record["reason"].startswith(kind + ": "), record
        assert record["source"] == "stream"
    assert batcher.stats.quarantined == len(bad)
    assert batcher.stats.quarantine_reasons == Counter(bad.values())
    assert batcher.stats.as_dict()["quarantine_reasons"] == dict(Counter(bad.values()))
    # the good trades of the same batch are written
    assert batch_ids(lake, result) == {"BTCUSDT": [20], "ETHUSDT": [21]}


def test_control_messages_are_handed_back_not_kept(lake):
    batcher = MicroBatcher(lake, SYMBOLS, WRITER)
    shutdown = batcher.add(b'{"e":"serverShutdown","E":1764000000000000}')
    assert isinstance(shutdown, Control)
    assert shutdown.kind == "serverShutdown"
    reply = batcher.add(b'{"result":null,"id":1}')
    assert isinstance(reply, Control)
    assert reply.kind == "reply"
    assert len(batcher) == 0
    assert batcher.add(trade("BTCUSDT", 1, at(13))) is None
    assert batcher.add(b"garbage") is None
    assert len(batcher) == 2
    result = batcher.write(batcher.take())
    assert len(batcher) == 0
    assert result.trades_written == 1
    assert result.quarantined == 1
    assert batcher.stats.received == 2


def test_heartbeats_hold_the_last_trade_and_counters(lake):
    batcher = MicroBatcher(lake, SYMBOLS, WRITER)
    flush(
        batcher,
        [
            trade("BTCUSDT", 7, at(12, 59, 59, 999_999)),
            trade("BTCUSDT", 9, at(13, 0, 0, 250_000)),
            trade("BTCUSDT", 8, at(13, 0, 0, 100_000)),
            b"oops",
        ],
    )
    flush(batcher, [trade("BTCUSDT", 9, at(13, 0, 0, 250_000))])  # a duplicate changes nothing
    batcher.write_heartbeats()
    keys = [info.key for info in lake.list("status/stream/")]
    assert keys == [f"status/stream/exchange=binance/writer={WRITER}.json"]  # one object, every symbol
    btc = read_status(lake, "BTCUSDT")
    assert btc["symbol"] == "BTCUSDT"
    assert btc["last_trade_id"] == 9
    assert btc["last_trade_time"] == datetime(2026, 11, 24, 13, 0, 0, 250_000, tzinfo=UTC).isoformat()
    assert btc["trades_written"] == 3
    assert btc["counters"] == {
        "received": 5,
        "written": 3,
        "duplicates": 1,
        "quarantined": 1,
        "quarantine_reasons": {"malformed JSON": 1},
        "batches": 2,
        "reconnects": 0,
        "gaps": 0,
        "gap_ids": 0,
        "recent_reconnects": [],
    }
    assert (btc["gaps"], btc["gap_ids"]) == (0, 0)
    expected_lag = (time.time_ns() // 1000 - at(13, 0, 0, 250_000)) / 1e6
    assert abs(btc["lag_seconds"] - expected_lag) < 60
    assert datetime.fromisoformat(btc["updated_at"]).tzinfo is not None
    eth = read_status(lake, "ETHUSDT")
    assert eth["last_trade_id"] is None
    assert eth["last_trade_time"] is None
    assert eth["trades_written"] == 0


def test_heartbeats_report_the_reconnects_of_the_window_and_no_more_than_can_happen_in_it(lake):
    """The reconnect-storm alert reads them: those older than the window are dropped, and the list never
    holds more than Binance lets one IP connect within it."""
    batcher = MicroBatcher(lake, SYMBOLS, WRITER)
    now, window_us = now_us(), int(RECONNECT_WINDOW.total_seconds()) * 1_000_000

    def reported() -> list[int]:
        batcher.write_heartbeats()
        times = read_status(lake, "BTCUSDT")["counters"]["recent_reconnects"]
        return [to_us(datetime.fromisoformat(moment)) for moment in times]

    early, recent = now - window_us - 1_000_000, now - window_us + 60_000_000  # a second before, a minute in
    batcher.stats.reconnected_at(early)
    batcher.stats.reconnected_at(recent)
    assert reported() == [recent]
    many = [recent + n for n in range(1, MAX_RECENT_RECONNECTS + 50)]
    for moment in many:
        batcher.stats.reconnected_at(moment)
    assert reported() == many[-MAX_RECENT_RECONNECTS:]
    assert MAX_RECENT_RECONNECTS == 600


def test_a_write_marker_follows_every_write_of_files(lake):
    batcher = MicroBatcher(lake, SYMBOLS, WRITER)
    assert list(lake.list("status/writes/")) == []
    print_before = writes_fingerprint(lake)

    first = flush(batcher, [trade("BTCUSDT", 1, at(13)), b"{bad"])
    body = marker(lake)
    assert body["keys"] == first.keys
    assert len(first.keys) == 2
    assert {k.split("/")[0] for k in body["keys"]} == {"trades", "quarantine"}
    assert body["writer"] == WRITER
    assert [info.key for info in lake.list("status/writes/")] == [f"status/writes/{WRITER}.json"]
    after_first = writes_fingerprint(lake)
    assert after_first != print_before

    nothing = flush(batcher, [trade("BTCUSDT", 1, at(13))])  # only a duplicate: no file, no marker
    assert nothing.keys == []
    assert marker(lake) == body
    assert writes_fingerprint(lake) == after_first

    second = flush(batcher, [trade("ETHUSDT", 5, at(14)), trade("BTCUSDT", 2, at(14))])
    assert batch_ids(lake, second) == {"BTCUSDT": [2], "ETHUSDT": [5]}
    assert sorted(marker(lake)["keys"]) == sorted(second.keys)
    assert writes_fingerprint(lake) != after_first


def test_two_writers_of_the_same_symbols_keep_their_own_markers(lake):
    """Two overlapping DAG runs stream the same shard: each writer announces its own partitions."""
    early = MicroBatcher(lake, SYMBOLS, "stream-run-1")
    late = MicroBatcher(lake, SYMBOLS, "stream-run-2")
    flush(early, [trade("BTCUSDT", 1, at(13))])
    flush(late, [trade("BTCUSDT", 2, at(14))])
    markers = {info.key: json.loads(lake.get(info.key)) for info in lake.list("status/writes/")}
    assert set(markers) == {"status/writes/stream-run-1.json", "status/writes/stream-run-2.json"}
    assert [p.split("/")[-2] for p in markers["status/writes/stream-run-1.json"]["partitions"]] == ["hour=13"]
    assert [p.split("/")[-2] for p in markers["status/writes/stream-run-2.json"]["partitions"]] == ["hour=14"]


def test_a_marker_that_cannot_be_read_yet_announces_its_keys_with_the_next_write(lake):
    """During an S3 outage the predecessor's marker cannot be read: the keys wait, none is lost."""

    class Unreadable:
        def __init__(self, inner):
            self.inner, self.url, self.down = inner, inner.url, True

        def put(self, key, data):
            self.inner.put(key, data)  # as a spool takes every put

        def get(self, key):
            if self.down:
                raise LakeError("S3 unreachable")
            return self.inner.get(key)

        def exists(self, key):
            return self.get(key) is not None if self.down else self.inner.exists(key)

        def list(self, prefix=""):
            return self.inner.list(prefix)

        def delete(self, key):
            self.inner.delete(key)

    store = Unreadable(lake)
    batcher = MicroBatcher(store, SYMBOLS, WRITER)
    first = flush(batcher, [trade("BTCUSDT", 1, at(13))])
    assert list(lake.list("status/writes/")) == []
    store.down = False
    second = flush(batcher, [trade("BTCUSDT", 2, at(14))])
    body = marker(lake)
    assert body["keys"] == first.keys + second.keys
    assert {p.split("/")[-2] for p in body["partitions"]} == {"hour=13", "hour=14"}
