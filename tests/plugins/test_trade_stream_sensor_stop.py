"""The stream sensor never reports a stop it did not finish as a success (issue 9, "quiet stop").

``BackgroundWorker.stop`` raises when its worker does not close and flush in time
(tests/ingest/test_stream_supervision.py); this checks the sensor passes that on, so the Airflow
task fails and is retried instead of ending green with trades still unwritten.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
import trade_stream_sensor as sensor_module
from trade_stream_sensor import TradeStreamSensor

from include.ingest.background import BackgroundWorker, WorkerStopTimeout
from include.lake.store import ObjectStore

WINDOW_OVER = "2000-01-01T00:00:00+00:00"  # the first poke is also the last: it flushes, then stops


class GatedLake:
    """A lake whose every put waits while ``gate`` is closed: a write that takes as long as it takes.
    Everything else is the inner lake's."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()

    def put(self, key: str, data: bytes) -> None:
        assert self.gate.wait(300), "the test never opened the gate"
        self.inner.put(key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_stop_that_does_not_finish_in_time_fails_the_poke_instead_of_reporting_success(
    start_sandbox, tmp_path, monkeypatch
):
    real_open, real_stop = sensor_module.open_stream_lake, BackgroundWorker.stop
    lakes: list[GatedLake] = []
    stopped: list[BackgroundWorker] = []

    def gated_lake(*args, **kwargs) -> GatedLake:
        lakes.append(GatedLake(real_open(*args, **kwargs)))
        return lakes[-1]

    def stop_while_the_lake_is_stuck(self: BackgroundWorker, timeout: float = 60.0) -> None:
        # The lake stops taking writes as the sensor stops its worker: the final flush (its heartbeats
        # at least) cannot finish, whatever the machine's speed. A shorter wait than the sensor's 60 s
        # only makes the timeout come sooner.
        stopped.append(self)
        lakes[-1].gate.clear()
        real_stop(self, min(timeout, 1.0))

    monkeypatch.setattr(sensor_module, "open_stream_lake", gated_lake)
    monkeypatch.setattr(BackgroundWorker, "stop", stop_while_the_lake_is_stuck)
    with start_sandbox(symbols=("BTCUSDT",), rate=50.0) as sandbox:
        monkeypatch.setenv("BINANCE_REST_URL", sandbox.rest_url)
        monkeypatch.setenv("BINANCE_WS_URL", sandbox.ws_url)
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        sensor = TradeStreamSensor(task_id="stream", symbols="BTCUSDT", window_end=WINDOW_OVER)
        ti = SimpleNamespace(dag_id="stream_trades", task_id="stream", run_id="manual__1", map_index=0)
        try:
            with pytest.raises(WorkerStopTimeout, match="did not stop within"):
                sensor.poke({"ti": ti})  # the window is over: a poke that returned would mean success
            (worker,) = stopped
            assert worker.alive  # the stop really had not finished
        finally:
            for lake in lakes:
                lake.gate.set()
            for worker in stopped:
                real_stop(worker)
    assert not worker.alive  # with the lake back, the same stop finishes


def test_a_sigterm_mid_window_flushes_closes_and_fails_the_next_poke_instead_of_streaming_again(
    start_sandbox, tmp_path, monkeypatch
):
    with start_sandbox(symbols=("BTCUSDT",), rate=50.0) as sandbox:
        monkeypatch.setenv("BINANCE_REST_URL", sandbox.rest_url)
        monkeypatch.setenv("BINANCE_WS_URL", sandbox.ws_url)
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        sensor = TradeStreamSensor(task_id="stream", symbols="BTCUSDT", window_end="2999-01-01T00:00:00+00:00")
        ti = SimpleNamespace(dag_id="stream_trades", task_id="stream", run_id="manual__1", map_index=0)
        assert sensor.poke({"ti": ti}) is False  # mid-window: streaming
        worker = sensor._worker
        assert worker is not None
        assert worker.alive

        sensor.on_kill()  # what Airflow's task runner calls on SIGTERM, before it lets the task go on
        assert not worker.alive
        with pytest.raises(sensor_module.StreamStopped, match="stopped before its window ended"):
            sensor.poke({"ti": ti})
        assert sensor._worker is None, "the poke after the stop opened a new stream"
