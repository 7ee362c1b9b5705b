"""Supervised connections, backpressure and an honest stop: a crash is restarted or fails the
worker, a slow lake pauses reading, and nothing is hidden or dropped.

Each test streams from a real sandbox over real sockets (but the backoff one, whose connection
crashes before it connects); the faults are injected into the worker's own code (a reader or a
watchdog that raises), as a bug would make them, since no frame the exchange sends should be able
to crash a reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest

import include.ingest.stream as stream_module
import include.ingest.worker as worker_module
from include.ingest.background import BackgroundWorker, WorkerStopTimeout
from include.ingest.stream import ShardConnection, StreamSettings
from include.ingest.worker import ConnectionFailed, StreamWorker, WorkerSettings
from include.lake.heartbeats import read_status
from include.lake.store import LocalStore, ObjectStore
from include.lake.trades import read_trades
from tests.support.exchange import assert_lake_is_the_exchange_history as exchange_history_check
from tests.support.exchange import assert_matches_exchange, assert_no_duplicates, history, lake_ids
from tests.support.net import admin, set_faults
from tests.support.waiting import wait_until

SYMBOLS = ("BTCUSDT", "ETHUSDT")
CRASHING = "ETHUSDT"  # the symbol whose connection the injected fault hits
RATE = 50.0


def worker_for(lake: ObjectStore, ws_url: str, **settings: Any) -> BackgroundWorker:
    """One connection per symbol, so a crash of one leaves the other running; fast backoff."""
    stream = StreamSettings(ws_url=ws_url, backoff_base_seconds=0.05, backoff_cap_seconds=0.2)
    return BackgroundWorker(
        StreamWorker(
            WorkerSettings(symbols=SYMBOLS, stream=stream, flush_seconds=0.5, streams_per_connection=1, **settings),
            lake,
        )
    )


def heartbeat(lake: ObjectStore, symbol: str) -> dict[str, Any]:
    return read_status(lake, symbol) or {}


def fail_reader(monkeypatch: pytest.MonkeyPatch, times: int | None) -> list[int]:
    """The reader of CRASHING's connection raises on its 20th frame, ``times`` times (None: always).

    Returns the list the crashes are noted in (the sandbox's last id is read by the test)."""
    real, crashes, seen = stream_module.looks_like_trade, [], [0]
    marker = f'"{CRASHING.lower()}@trade"'.encode()

    def looks_like_trade(frame: bytes) -> bool:
        if marker in frame[:40]:
            seen[0] += 1
            if seen[0] % 20 == 0 and (times is None or len(crashes) < times):
                crashes.append(seen[0])
                raise RuntimeError("injected reader fault")
        return real(frame)

    monkeypatch.setattr(stream_module, "looks_like_trade", looks_like_trade)
    return crashes


def fail_watchdog_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """CRASHING's connection loop raises once, on its third look at the reader."""
    real, crashes, calls = ShardConnection._needs_handover, [], [0]

    def needs_handover(self: ShardConnection, reader: Any) -> str | None:
        if self.streams == [f"{CRASHING.lower()}@trade"]:
            calls[0] += 1
            if calls[0] == 3:
                crashes.append(calls[0])
                raise RuntimeError("injected watchdog fault")
        return real(self, reader)

    monkeypatch.setattr(ShardConnection, "_needs_handover", needs_handover)
    return crashes


@pytest.mark.slow
@pytest.mark.parametrize("where", ["reader", "watchdog"])
def test_a_crashed_connection_is_restarted_and_its_symbols_keep_streaming(start_sandbox, tmp_path, monkeypatch, where):
    crashes = fail_reader(monkeypatch, times=1) if where == "reader" else fail_watchdog_once(monkeypatch)
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=SYMBOLS, rate=RATE) as sandbox:
        background = worker_for(lake, sandbox.ws_url)
        background.start()
        try:
            wait_until(lambda: crashes, 60, "the injected crash")
            at_crash = admin(sandbox)["symbols"][CRASHING]["last_id"]
            # Its symbol streams again: trades made well after the crash reach the lake.
            wait_until(lambda: (lake_ids(read_trades(lake, CRASHING)) > at_crash + 50).any(), 60, "trades after it")
            wait_until(lambda: heartbeat(lake, CRASHING).get("connection", {}).get("restarts") == 1, 60, "a heartbeat")
            assert background.alive
        finally:
            background.stop()
        rest_url = sandbox.rest_url
        tables = {symbol: read_trades(lake, symbol) for symbol in SYMBOLS}
        truth = {
            symbol: history(rest_url, symbol, int(lake_ids(t).min()), int(lake_ids(t).max()))
            for symbol, t in tables.items()
        }
    for symbol, table in tables.items():
        assert_no_duplicates(lake_ids(table))
        assert_matches_exchange(table, truth[symbol], symbol)
    # Each heartbeat shows its own connection: only the crashed one was restarted.
    crashed, other = heartbeat(lake, CRASHING)["connection"], heartbeat(lake, "BTCUSDT")["connection"]
    assert (crashed["restarts"], other["restarts"]) == (1, 0)
    assert crashed["connection"] != other["connection"]
    # The other connection never stopped: its symbol is complete over the whole run.
    btc = lake_ids(tables["BTCUSDT"])
    assert sorted(btc.tolist()) == list(range(int(btc.min()), int(btc.max()) + 1))


@pytest.mark.slow
def test_a_reader_that_always_crashes_fails_the_worker_with_its_error(start_sandbox, tmp_path, monkeypatch):
    crashes = fail_reader(monkeypatch, times=None)
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=SYMBOLS, rate=RATE) as sandbox:
        background = worker_for(lake, sandbox.ws_url, restart_limit=3)
        background.start()
        try:
            wait_until(lambda: not background.alive, 120, "the worker to give up")
            with pytest.raises(ConnectionFailed, match=r"crashed 3 times.*injected reader fault"):
                background.flush()
            with pytest.raises(ConnectionFailed):
                background.stop()
        finally:
            with contextlib.suppress(ConnectionFailed):
                background.stop()
    assert len(crashes) == 3
    assert heartbeat(lake, CRASHING)["connection"]["state"] == "failed"
    assert "injected reader fault" in heartbeat(lake, CRASHING)["connection"]["error"]
    # What the healthy connection received was flushed on the way out.
    assert heartbeat(lake, "BTCUSDT")["connection"]["state"] == "stopped"
    assert len(read_trades(lake, "BTCUSDT")) > 0


def test_each_restart_waits_its_backoff_step_first(tmp_path, monkeypatch):
    """A crashed connection is restarted only after the usual backoff: the n-th crash in a row waits
    ``backoff_delay(n - 1, base, cap)`` before the next start, never a tight restart loop.

    No exchange is needed: the connection's ``run`` itself raises at once. The check on the gaps
    is a lower bound only (the wait the code asked for), so a slow machine cannot fail it."""
    starts: list[float] = []
    asked: list[tuple[int, float, float, float]] = []

    async def crash_at_once(self: ShardConnection, stop: Any) -> None:
        starts.append(time.monotonic())
        raise RuntimeError("injected crash at start")

    def recording_backoff(attempt: int, base: float, cap: float, rng: Any) -> float:
        delay = stream_module.backoff_delay(attempt, base, cap, rng)
        asked.append((attempt, base, cap, delay))
        return delay

    monkeypatch.setattr(ShardConnection, "run", crash_at_once)
    monkeypatch.setattr(worker_module, "backoff_delay", recording_backoff)
    stream = StreamSettings(ws_url="ws://127.0.0.1:9", backoff_base_seconds=0.2, backoff_cap_seconds=0.3)
    worker = StreamWorker(
        WorkerSettings(symbols=("BTCUSDT",), stream=stream, flush_seconds=0.5, restart_limit=4),
        LocalStore(tmp_path / "lake"),
    )
    with pytest.raises(ConnectionFailed, match=r"crashed 4 times.*injected crash at start"):
        asyncio.run(worker.run(asyncio.Event()))
    # Three restarts, each after the step of its attempt (capped), the fourth crash fails the worker.
    assert [(attempt, base, cap) for attempt, base, cap, _ in asked] == [(0, 0.2, 0.3), (1, 0.2, 0.3), (2, 0.2, 0.3)]
    assert len(starts) == 4
    for (_, _, _, delay), before, after in zip(asked, starts[:-1], starts[1:], strict=True):
        assert after - before >= delay - 0.01, (delay, after - before)
    assert heartbeat(LocalStore(tmp_path / "lake"), "BTCUSDT")["connection"]["state"] == "failed"


@pytest.mark.slow
def test_the_last_heartbeat_says_stopped_even_when_no_trade_came_since_the_last_one(start_sandbox, tmp_path):
    """A quiet market at shutdown: the final flush writes nothing, yet the heartbeat must not go
    on saying "connected" for a worker that has stopped."""
    lake = LocalStore(tmp_path / "lake")
    with start_sandbox(symbols=SYMBOLS, rate=RATE) as sandbox:
        background = worker_for(lake, sandbox.ws_url, heartbeat_seconds=3600.0)
        background.start()
        try:
            wait_until(lambda: heartbeat(lake, "BTCUSDT").get("connection", {}).get("state") == "connected", 60, "hb")
            set_faults(sandbox, {"skip_fraction": 1.0})
            worker, seen = background.worker, [-1]

            def quiet_and_flushed() -> bool:  # nothing received since the last poll, nothing left to write
                before, seen[0] = seen[0], worker.stats.received
                return before == seen[0] and not len(worker.batcher) and not worker.batcher.frames

            wait_until(quiet_and_flushed, 60, "the market to go quiet", interval=1.0)  # > flush_seconds
        finally:
            background.stop()
    for symbol in SYMBOLS:
        assert heartbeat(lake, symbol)["connection"]["state"] == "stopped"


class BlockedLake:
    """A lake whose trade writes wait until ``gate`` opens: a write that takes as long as it takes."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.url = inner, inner.url
        self.gate = threading.Event()

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("trades/"):
            assert self.gate.wait(300), "the test never opened the gate"
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Any:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


@pytest.mark.slow
def test_a_stop_that_does_not_finish_in_time_raises(start_sandbox, tmp_path):
    lake = BlockedLake(LocalStore(tmp_path / "lake"))
    with start_sandbox(symbols=SYMBOLS, rate=RATE) as sandbox:
        background = worker_for(lake, sandbox.ws_url)
        background.start()
        try:
            wait_until(lambda: background.worker.stats.received + len(background.worker.batcher), 60, "trades")
            with pytest.raises(WorkerStopTimeout, match=r"did not stop within 0\.5 s"):
                background.stop(timeout=0.5)  # its flush cannot finish while the lake holds the write
            assert background.alive
        finally:
            lake.gate.set()
        background.stop()  # the write goes through: now the stop finishes, cleanly
    assert not background.alive
    # What it held was written (whichever symbol's trades came first).
    assert sum(len(read_trades(lake.inner, symbol)) for symbol in SYMBOLS) > 0


@pytest.mark.slow
def test_a_slow_lake_pauses_reading_and_every_trade_reaches_the_lake_once(start_sandbox, tmp_path):
    """The lake stops taking writes for a while: the buffer fills, reading pauses (memory stays
    bounded), and once the lake takes writes again every trade made meanwhile is written, once.

    A pause that long is not the exchange going silent: it must not start a handover either."""
    lake = BlockedLake(LocalStore(tmp_path / "lake"))
    lake.gate.set()
    limit = 300
    with start_sandbox(symbols=("BTCUSDT",), rate=1000.0) as sandbox:
        settings = WorkerSettings(
            symbols=("BTCUSDT",),
            stream=StreamSettings(ws_url=sandbox.ws_url, silence_seconds=3.0),  # far shorter than the pause
            flush_seconds=0.2,
            flush_trades=100,
            max_buffered_trades=limit,
        )
        background = BackgroundWorker(StreamWorker(settings, lake))
        worker = background.worker
        background.start()
        try:
            wait_until(lambda: list(lake.list("trades/")), 60, "a first write")
            lake.gate.clear()  # the lake is slow now
            wait_until(lambda: len(worker.batcher) >= limit // 2, 60, "the buffer to fill up")
            peak, since = [0], admin(sandbox)["symbols"]["BTCUSDT"]["last_id"]

            def many_more_trades_made() -> bool:
                peak[0] = max(peak[0], len(worker.batcher))
                return admin(sandbox)["symbols"]["BTCUSDT"]["last_id"] >= since + 20 * limit

            wait_until(many_more_trades_made, 60, "the exchange to make far more trades than the buffer holds")
            assert peak[0] <= limit + 1, peak  # one frame past the limit per connection, at most
            lake.gate.set()
            made = admin(sandbox)["symbols"]["BTCUSDT"]["last_id"]
            wait_until(lambda: lake_ids(read_trades(lake.inner, "BTCUSDT")).max() >= made, 60, "the backlog")
        finally:
            lake.gate.set()
            background.stop()
        ids = exchange_history_check(lake.inner, sandbox.rest_url, "BTCUSDT")
    assert ids[-1] >= made
    (connection,) = worker.state.shards
    assert (connection.handovers, worker.reconnects()) == (0, 0)
