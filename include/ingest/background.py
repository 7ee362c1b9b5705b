"""The streaming worker on a background thread, driven by a synchronous caller (the Airflow sensor).

The worker's connections live on their own event loop in a thread, so they stay open between the
caller's calls; ``flush`` writes the current micro-batch and returns its counts. A worker that
crashed, or a stop that does not finish in time, raises in the caller: the task fails and is
retried instead of reporting a success it did not have.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from concurrent.futures import Future

from include.ingest.batcher import FlushResult
from include.ingest.worker import StreamWorker

START_TIMEOUT_SECONDS = 30.0


class WorkerStopTimeout(TimeoutError):
    """The worker did not close its connections and flush within the time given."""


class BackgroundWorker:
    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()  # bound to the worker's loop when first awaited there
        self._done: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="stream-worker", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.worker.run(self._stop))
            self._done.set_result(None)
        except BaseException as error:  # surfaced to the caller by start(), flush() and stop()
            self._done.set_exception(error)
        finally:
            self._loop.close()

    def _wait(self, future: Future[object], timeout: float) -> None:
        """Wait for ``future`` or the worker's end, whichever comes first; raise the worker's crash."""
        concurrent.futures.wait([future, self._done], timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        if not future.done() and self._done.done():
            future.cancel()
            self._done.result()  # re-raises the worker's crash
            raise RuntimeError("the stream worker has stopped")

    def start(self) -> None:
        self._thread.start()
        ready = asyncio.run_coroutine_threadsafe(self.worker.ready.wait(), self._loop)
        self._wait(ready, START_TIMEOUT_SECONDS)
        ready.result(0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def flush(self, timeout: float = 120.0) -> FlushResult:
        if self._done.done():
            self._done.result()  # re-raises the worker's crash
            raise RuntimeError("the stream worker has stopped")
        flushed = asyncio.run_coroutine_threadsafe(self.worker.flush(), self._loop)
        self._wait(flushed, timeout)
        return flushed.result(0)

    def stop(self, timeout: float = 60.0) -> None:
        """Close the connections, flush the rest, and wait for the thread to end.

        Raises ``WorkerStopTimeout`` when that takes longer than ``timeout``: what was received may
        not be written yet, and the caller must not take the stop for a clean one.
        """
        if self._thread.is_alive() and not self._done.done():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise WorkerStopTimeout(f"the stream worker did not stop within {timeout:g} s")
        if self._done.done():
            self._done.result()
