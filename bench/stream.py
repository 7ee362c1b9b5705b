"""Streaming throughput: WebSocket receive -> parse -> validate -> batch -> Parquet in the lake.

The sandbox replays a generated dump of ``--trades`` trades as fast as it can (live replay at an
enormous speed) on one core, and the client runs on the other: first a bare ``websockets``
receive loop, then the real ``StreamWorker`` writing to a local lake. Each client runs in its own
process, so its peak RSS is its own. Targets (issue 3): >= 100,000 trades/s, >= 0.6 of the bare
loop, peak RSS <= 250 MB; the p99 flush latency is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CLIENT_CORE, REPO_ROOT, free_port, pinned, start_sandbox, write_dump
from include.lake.store import LocalStore
from include.lake.trades import read_trade_ids

REPLAY_DELAY_SECONDS = 6.0


def run_client(mode: str, port: int, count: int, lake_dir: Path) -> dict[str, float]:
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.stream",
            "--client",
            mode,
            "--port",
            str(port),
            "--trades",
            str(count),
            "--lake",
            str(lake_dir),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=pinned(CLIENT_CORE),
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


# The clients ---------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bare_client(port: int, count: int) -> dict[str, float]:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade&timeUnit=MICROSECOND"
    async with connect(url, compression=None, max_size=1 << 20, max_queue=1024) as ws:
        received, first = 0, 0.0
        async for _ in ws:
            if not received:
                first = time.perf_counter()
            received += 1
            if received == count:
                break
        seconds = time.perf_counter() - first
    return {"trades_per_second": (count - 1) / seconds, "peak_rss_mb": peak_rss_mb()}


async def pipeline_client(port: int, count: int, lake_dir: Path) -> dict[str, float]:
    from include.ingest.stream import StreamSettings
    from include.ingest.worker import StreamWorker, WorkerSettings
    from include.lake.store import LocalStore

    if True:
        lake = LocalStore(lake_dir)
        worker = StreamWorker(
            WorkerSettings(symbols=("BTCUSDT",), stream=StreamSettings(ws_url=f"ws://127.0.0.1:{port}")), lake
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        while worker.batcher.stats.received + len(worker.batcher) == 0:
            await asyncio.sleep(0.0005)
        first = time.perf_counter()
        while worker.batcher.stats.received + len(worker.batcher) < count:
            await asyncio.sleep(0.005)
        stop.set()
        await running  # the last flush has been written when run() returns
        seconds = time.perf_counter() - first
        flushes = sorted(worker.batcher.stats.flush_seconds)
        return {
            "trades_per_second": worker.batcher.stats.written / seconds,
            "written": worker.batcher.stats.written,
            "peak_rss_mb": peak_rss_mb(),
            "p99_flush_ms": 1000 * flushes[min(len(flushes) - 1, int(0.99 * len(flushes)))],
            "flushes": len(flushes),
        }


def main(count: int = 1_500_000) -> bool:
    print(f"\n== stream: WS receive -> parse -> validate -> batch -> Parquet ({count:,} trades) ==", flush=True)
    with tempfile.TemporaryDirectory() as work:
        dump = Path(work) / "BTCUSDT-trades-2026-01-01.csv"
        write_dump(dump, count)
        results = {}
        for mode in ("bare", "pipeline"):
            port = free_port()
            sandbox = start_sandbox(dump, port)
            try:
                results[mode] = run_client(mode, port, count, Path(work) / "lake")
            finally:
                sandbox.terminate()
                sandbox.wait(30)
        # Checked here, not in the client, so that reading it back does not count in the client's RSS.
        results["pipeline"]["stored_ids"] = len(read_trade_ids(LocalStore(Path(work) / "lake"), "BTCUSDT"))
    bare, pipeline = results["bare"], results["pipeline"]
    ratio = pipeline["trades_per_second"] / bare["trades_per_second"]
    print(f"bare websockets receive loop : {bare['trades_per_second']:>10,.0f} trades/s")
    print(f"pipeline (into the lake)     : {pipeline['trades_per_second']:>10,.0f} trades/s  (target >= 100,000)")
    print(f"pipeline / bare              : {ratio:>10.2f}          (target >= 0.60)")
    print(f"pipeline peak RSS            : {pipeline['peak_rss_mb']:>10.0f} MB      (target <= 250)")
    print(f"p99 flush latency            : {pipeline['p99_flush_ms']:>10.1f} ms      ({pipeline['flushes']} flushes)")
    print(f"trades written / ids stored  : {pipeline['written']:,} / {pipeline['stored_ids']:,} of {count:,} sent")
    return (
        pipeline["trades_per_second"] >= 100_000
        and ratio >= 0.6
        and pipeline["peak_rss_mb"] <= 250
        and pipeline["stored_ids"] == count
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=("bare", "pipeline"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--trades", type=int, default=1_500_000)
    parser.add_argument("--lake", type=Path)
    args = parser.parse_args()
    if args.client == "bare":
        print(json.dumps(asyncio.run(bare_client(args.port, args.trades))))
    elif args.client == "pipeline":
        print(json.dumps(asyncio.run(pipeline_client(args.port, args.trades, args.lake))))
    else:
        sys.exit(0 if main(args.trades) else 1)
