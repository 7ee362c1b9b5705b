"""Streaming throughput: WebSocket receive -> parse -> validate -> batch -> Parquet in the lake.

A sender process (``bench/sender.py``) replays pre-encoded Binance combined-stream trade frames
from memory over a real WebSocket on 127.0.0.1, on one core; the client (``bench/stream_client.py``)
runs on the other: first a bare ``websockets`` receive loop (the same ``recv`` call the worker
makes, nothing else), then the real ``StreamWorker`` writing to a local lake. Each client runs in
its own process, so its peak RSS is its own. The sender reports what it managed to send beside
both clients' rates, and how busy its core was: a sender at 100% would be the limit, not the
client. The clients' CPU time gives their rate per CPU-second too, which other processes sharing
the core (tests running beside the benchmark) do not lower. Targets (issue 3): >= 100,000
trades/s, >= 0.6 of the bare loop, peak RSS <= 250 MB, every id stored exactly once; the p99 flush
latency is reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import CLIENT_CORE, REPO_ROOT, SERVER_CORE, ids_stored_once, pinned
from bench.report import Report, Target
from bench.stream_client import SYMBOL
from include.lake.store import LocalStore
from include.lake.trades import read_trades

FULL_TRADES, SMOKE_TRADES = 1_500_000, 2_000
FIRST_ID = 4_200_000_001  # not 1: nothing may assume where a symbol's ids start


def run_client(mode: str, port: int, count: int, lake_dir: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.stream_client", mode, "--port", str(port)]
    command += ["--trades", str(count), "--lake", str(lake_dir)]
    output = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, preexec_fn=pinned(CLIENT_CORE), check=False
    )
    if output.returncode:
        raise RuntimeError(f"the {mode} client failed ({output.returncode}):\n{output.stderr}")
    return json.loads(output.stdout.strip().splitlines()[-1])


class SenderProcess:
    """``python -m bench.sender`` on its own core; ``port`` once it listens, ``result()`` per connection."""

    def __init__(self, count: int, connections: int) -> None:
        command = [sys.executable, "-m", "bench.sender", "--trades", str(count), "--first-id", str(FIRST_ID)]
        self.process = subprocess.Popen(
            [*command, "--connections", str(connections)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(SERVER_CORE),
        )
        self.port = int(self.result()["port"])

    def result(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # ends when the sender prints or exits
        if not line:
            raise RuntimeError(f"the sender exited ({self.process.wait()}) without reporting")
        return json.loads(line)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


# The benchmark -------------------------------------------------------------------------------


def stored_once(lake_dir: Path, count: int) -> tuple[bool, str]:
    """Whether the lake holds exactly the ids sent, each in one row."""
    return ids_stored_once(read_trades(LocalStore(lake_dir), SYMBOL)["trade_id"].to_numpy(), FIRST_ID, count)


def busy(figures: dict[str, Any]) -> str:
    """How much of its core a process used while it was timed: well below 100% for a client means
    other processes shared its core, and its wall-clock rate understates it."""
    return f"{100 * figures['cpu_seconds'] / figures['seconds']:.0f}% of its core busy"


def measure(count: int, work: Path) -> dict[str, dict[str, Any]]:
    sender = SenderProcess(count, connections=2)
    try:
        results: dict[str, dict[str, Any]] = {}
        for mode in ("bare", "pipeline"):
            results[mode] = run_client(mode, sender.port, count, work / "lake")
            results[f"{mode} sender"] = sender.result()
    finally:
        sender.stop()
    return results


def main(smoke: bool = False, count: int | None = None) -> bool:
    count = count or (SMOKE_TRADES if smoke else FULL_TRADES)
    report = Report(f"stream: WS receive -> parse -> validate -> batch -> Parquet ({count:,} trades)")
    with tempfile.TemporaryDirectory() as work:
        results = measure(count, Path(work))
        # Checked here, not in the client, so that reading it back does not count in the client's RSS.
        ids_ok, ids_detail = stored_once(Path(work) / "lake", count)
    bare, pipeline = results["bare"], results["pipeline"]
    for mode in ("bare", "pipeline"):
        sent = results[f"{mode} sender"]
        report.figure(f"sender, to the {mode} client", sent["frames"] / sent["seconds"], "frames/s", note=busy(sent))
    bare_rate, pipeline_rate = bare["trades"] / bare["seconds"], pipeline["trades"] / pipeline["seconds"]
    report.figure("bare websockets receive loop", bare_rate, "trades/s", note=busy(bare))
    pipeline_target = Target(">=", 100_000)
    report.figure("pipeline (into the lake)", pipeline_rate, "trades/s", target=pipeline_target, note=busy(pipeline))
    report.figure("pipeline / bare", pipeline_rate / bare_rate, digits=2, target=Target(">=", 0.6))
    unshared = "not lowered by other processes on its core"
    report.figure("bare loop, per CPU-second", bare["trades"] / bare["cpu_seconds"], "trades/s", note=unshared)
    report.figure("pipeline, per CPU-second", pipeline["trades"] / pipeline["cpu_seconds"], "trades/s", note=unshared)
    report.figure("pipeline peak RSS", pipeline["peak_rss_mb"], "MB", target=Target("<=", 250))
    report.figure("p99 flush latency", pipeline["p99_flush_ms"], "ms", digits=1, note=f"{pipeline['flushes']} flushes")
    written = f"{pipeline['trades']:,} of {count:,}"
    report.check("every trade sent was written", pipeline["trades"] == count, written)
    report.check("all ids stored exactly once", ids_ok, ids_detail)
    return report.passed(enforce_targets=not smoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_TRADES:,} trades, targets not enforced")
    parser.add_argument("--trades", type=int, help=f"how many trades (default {FULL_TRADES:,})")
    arguments = parser.parse_args()
    sys.exit(0 if main(arguments.smoke, arguments.trades) else 1)
