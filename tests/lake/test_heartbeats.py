"""The stream's heartbeats: one object per writer, a symbol's status the newest writer's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from include.ingest.batcher import MicroBatcher, SymbolStatus
from include.lake.heartbeats import prune_stale, read_status, read_statuses, write_heartbeat
from include.lake.keys import HEARTBEAT_PREFIX, heartbeat_key
from include.lake.store import LocalStore

T0 = datetime(2026, 11, 24, 8, tzinfo=UTC)
SYMBOLS = [f"SYM{n}USDT" for n in range(40)]


def status(last_trade_id: int) -> dict[str, object]:
    return {"last_trade_id": last_trade_id, "last_trade_time": T0.isoformat(), "lag_seconds": 0.1, "connection": None}


def test_a_writer_leaves_one_heartbeat_object_whatever_its_number_of_symbols(tmp_path):
    lake = LocalStore(tmp_path)
    batcher = MicroBatcher(lake, frozenset(SYMBOLS), "stream-shard-0")
    batcher.status["SYM3USDT"] = SymbolStatus(last_trade_id=77, last_trade_time_us=1, trades_written=5)

    batcher.write_heartbeats()
    batcher.write_heartbeats()

    assert [info.key for info in lake.list(HEARTBEAT_PREFIX)] == [heartbeat_key("stream-shard-0")]
    statuses = read_statuses(lake)
    assert sorted(statuses) == sorted(SYMBOLS)
    assert (statuses["SYM3USDT"]["last_trade_id"], statuses["SYM3USDT"]["trades_written"]) == (77, 5)
    assert statuses["SYM3USDT"]["counters"] == batcher.stats.as_dict()


def test_a_symbol_two_writers_carry_is_the_newest_writers(tmp_path):
    lake = LocalStore(tmp_path)
    write_heartbeat(lake, "window-2", T0 + timedelta(seconds=9), {}, {"BTCUSDT": status(20)})
    write_heartbeat(lake, "window-1", T0 + timedelta(seconds=5), {}, {"BTCUSDT": status(10), "ETHUSDT": status(3)})

    assert read_status(lake, "BTCUSDT")["last_trade_id"] == 20
    assert read_status(lake, "ETHUSDT")["last_trade_id"] == 3
    assert read_status(lake, "XRPUSDT") is None


def test_a_heartbeat_of_one_symbol_left_by_an_earlier_layout_still_counts(tmp_path):
    lake = LocalStore(tmp_path)
    old = {"symbol": "BTCUSDT", "updated_at": (T0 + timedelta(seconds=30)).isoformat(), **status(99)}
    lake.put(f"{HEARTBEAT_PREFIX}exchange=binance/symbol=BTCUSDT.json", json.dumps(old).encode())
    write_heartbeat(lake, "window-1", T0, {}, {"BTCUSDT": status(10)})

    assert read_status(lake, "BTCUSDT")["last_trade_id"] == 99


def test_a_cache_reads_only_the_heartbeats_that_changed(tmp_path):
    class CountingLake(LocalStore):
        gets = 0

        def get(self, key: str) -> bytes:
            CountingLake.gets += 1
            return super().get(key)

    lake = CountingLake(tmp_path)
    for writer in ("a", "b", "c"):
        write_heartbeat(lake, writer, T0, {}, {f"{writer.upper()}USDT": status(1)})
    cache: dict = {}
    assert len(read_statuses(lake, cache)) == 3
    assert CountingLake.gets == 3

    write_heartbeat(lake, "b", T0 + timedelta(seconds=5), {}, {"BUSDT": status(2)})
    assert read_status(lake, "BUSDT", cache)["last_trade_id"] == 2
    assert CountingLake.gets == 4  # only b's, read again

    lake.delete(heartbeat_key("a"))
    assert "AUSDT" not in read_statuses(lake, cache)
    assert set(cache) == {heartbeat_key("b"), heartbeat_key("c")}


def test_heartbeats_silent_for_a_day_are_pruned_and_recent_ones_kept(tmp_path):
    lake = LocalStore(tmp_path)
    now = T0 + timedelta(days=3)
    write_heartbeat(lake, "gone", now - timedelta(days=1, minutes=1), {}, {"BTCUSDT": status(1)})
    write_heartbeat(lake, "live", now - timedelta(minutes=1), {}, {"BTCUSDT": status(2)})

    assert prune_stale(lake, now) == [heartbeat_key("gone")]
    assert [info.key for info in lake.list(HEARTBEAT_PREFIX)] == [heartbeat_key("live")]
