"""The stream benchmark's clients, each run in a process of its own: ``python -m bench.stream_client``.

This module imports nothing the client does not need, so the peak RSS it reports is the client's:
the bare loop, or the real ``StreamWorker`` (``include/ingest/worker.py``) writing to a local lake.
It prints one JSON line of figures, with the CPU time the client used beside the wall-clock time: on
a machine where other work shares the client's core, trades per CPU-second still say what the
client can do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

SYMBOL = "BTCUSDT"
LIVENESS_SECONDS = 600.0  # a client that has not seen every trade by then has lost some


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bare_client(port: int, count: int) -> dict[str, float]:
    """Receive ``count`` frames with the worker's own ``recv(decode=False)``, and nothing else."""
    from websockets.asyncio.client import connect

    from include.ingest.stream import stream_names, stream_url

    url = stream_url(f"ws://127.0.0.1:{port}", stream_names([SYMBOL]))
    async with (
        asyncio.timeout(LIVENESS_SECONDS),
        connect(url, compression=None, max_size=1 << 20, max_queue=1024) as ws,
    ):
        recv = ws.recv
        await recv(decode=False)
        first, cpu = time.perf_counter(), time.process_time()
        for _ in range(count - 1):
            await recv(decode=False)
        seconds, cpu_seconds = time.perf_counter() - first, time.process_time() - cpu
    return {"trades": count - 1, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_rss_mb()}


async def pipeline_client(port: int, count: int, lake_dir: Path) -> dict[str, float]:
    """The real worker, from its first frame until its last flush of ``count`` trades is written."""
    from include.ingest.stream import StreamSettings
    from include.ingest.worker import StreamWorker, WorkerSettings
    from include.lake.store import LocalStore

    settings = WorkerSettings(symbols=(SYMBOL,), stream=StreamSettings(ws_url=f"ws://127.0.0.1:{port}"))
    worker = StreamWorker(settings, LocalStore(lake_dir))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    stats = worker.batcher.stats
    async with asyncio.timeout(LIVENESS_SECONDS):
        while stats.received + len(worker.batcher) == 0:
            await asyncio.sleep(0.0005)
        first, cpu = time.perf_counter(), time.process_time()
        while stats.received + len(worker.batcher) < count:
            await asyncio.sleep(0.005)
        stop.set()
        await running  # the last flush has been written when run() returns
    seconds, cpu_seconds = time.perf_counter() - first, time.process_time() - cpu
    flushes = sorted(stats.flush_seconds)
    return {
        "trades": stats.written,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,  # every thread's: the writes run in one
        "peak_rss_mb": peak_rss_mb(),
        "p99_flush_ms": 1000 * flushes[min(len(flushes) - 1, int(0.99 * len(flushes)))],
        "flushes": len(flushes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("bare", "pipeline"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--trades", type=int, required=True)
    parser.add_argument("--lake", type=Path, required=True)
    args = parser.parse_args()
    if args.mode == "bare":
        figures = asyncio.run(bare_client(args.port, args.trades))
    else:
        figures = asyncio.run(pipeline_client(args.port, args.trades, args.lake))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
