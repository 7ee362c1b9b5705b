"""The sandbox exchange in tests: a config on a free port, its REST history, an in-process stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from include.ingest.stream import StreamSettings
from include.ingest.worker import StreamWorker, WorkerSettings
from include.lake.store import ObjectStore
from include.sandbox.config import SandboxConfig
from tests.support.net import http_get


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """A sandbox on a free port; keyword arguments override SandboxConfig fields."""
    return replace(SandboxConfig(port=0), **overrides)


def rest_history(
    rest_url: str,
    symbol: str = "BTCUSDT",
    from_id: int = 0,
    headers: dict[str, str] | None = None,
    until_us: int | None = None,
    to_id: int | None = None,
    wait_out_errors: bool = False,
) -> list[dict[str, Any]]:
    """Every trade from ``from_id`` on, paged with historicalTrades (``limit=1000``) as a backfill would.

    Paging stops on an empty page, once ``to_id`` is reached, or once a page reaches ``until_us``
    (in the unit ``headers`` ask for); trades with ``id >= to_id`` or ``time >= until_us`` are left out.
    Any answer but 200 fails the test, unless ``wait_out_errors``: then a 429 is waited out
    (``Retry-After``) and a 5xx asked again.
    """
    rows: list[dict[str, Any]] = []
    while to_id is None or from_id < to_id:
        url = f"{rest_url}/api/v3/historicalTrades?symbol={symbol}&fromId={from_id}&limit=1000"
        status, head, page = http_get(url, headers)
        if wait_out_errors and status == 429:
            time.sleep(float({name.lower(): value for name, value in head.items()}["retry-after"]))
            continue
        if wait_out_errors and status >= 500:
            continue
        assert status == 200, (url, status, page)
        assert len(page) <= 1000
        rows.extend(
            row for row in page if (to_id is None or row["id"] < to_id) and (until_us is None or row["time"] < until_us)
        )
        if not page or (until_us is not None and page[-1]["time"] >= until_us):
            break
        from_id = page[-1]["id"] + 1
    return rows


def stream_for(
    lake: ObjectStore,
    ws_url: str,
    seconds: float,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    before_stop: Callable[[], None] | None = None,
    flush_seconds: float = 1.0,
    **stream: Any,
) -> StreamWorker:
    """Run a StreamWorker in this process for ``seconds``, then stop it (it flushes what is left).

    ``before_stop`` runs (in a thread) after the ``seconds`` and before the stop; ``stream`` are
    StreamSettings fields besides ``ws_url``.
    """
    worker = StreamWorker(
        WorkerSettings(symbols=symbols, stream=StreamSettings(ws_url=ws_url, **stream), flush_seconds=flush_seconds),
        lake,
    )

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await asyncio.wait([running], timeout=seconds)
        assert not running.done(), f"the worker ended early: {running.exception() if running.done() else ''}"
        if before_stop is not None:
            await asyncio.to_thread(before_stop)
        stop.set()
        await asyncio.wait_for(running, 60)

    asyncio.run(main())
    return worker
