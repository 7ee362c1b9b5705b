"""The streaming worker on a background thread, driven by a synchronous caller (the Airflow sensor).

The worker's connections live on their own event loop in a thread, so they stay open between the
caller's calls; ``flush`` writes the current micro-batch and returns its counts.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from include.ingest.batcher import FlushResult
from include.ingest.worker import StreamWorker

START_TIMEOUT_SECONDS = 30.0


class BackgroundWorker:
    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._done: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="stream-worker", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            await self.worker.run(self._stop)

        try:
            self._loop.run_until_complete(main())
            self._done.set_result(None)
        except BaseException as error:  # surfaced to the caller by flush() and stop()
            self._done.set_exception(error)
        finally:
            self._loop.close()

    def start(self) -> None:
        self._thread.start()
        ready = asyncio.run_coroutine_threadsafe(self.worker.ready.wait(), self._loop)
        ready.result(START_TIMEOUT_SECONDS)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def flush(self, timeout: float = 120.0) -> FlushResult:
        if self._done.done():
            self._done.result()  # re-raises the worker's crash
            raise RuntimeError("the stream worker has stopped")
        return asyncio.run_coroutine_threadsafe(self.worker.flush(), self._loop).result(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Close the connections, flush the rest, and wait for the thread to end."""
        if self._stop is not None and not self._done.done():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._done.done():
            self._done.result()
