"""What the benchmarks share: a generated trade dump, a free port, CPU pinning, a sandbox process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_CORE, CLIENT_CORE = 0, 1  # the exchange (sandbox or sender) and the client under test
DUMP_START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, a date whose dumps carry microseconds


def write_dump(path: Path, count: int, first_id: int) -> None:
    """A data.binance.vision-style BTCUSDT dump: ids from ``first_id``, one trade per 100 µs from 2026-01-01."""
    end = first_id + count
    with path.open("w") as out:
        for first in range(first_id, end, 100_000):
            rows = []
            for trade_id in range(first, min(first + 100_000, end)):
                n = trade_id - first_id
                cents = 6_000_000 + n % 1000
                qty = 1 + n % 977
                rows.append(
                    f"{trade_id},{cents // 100}.{cents % 100:02d}000000,0.{qty:05d}000,"
                    f"{cents * qty // 100_000}.{(cents * qty) % 100_000:05d}000,"
                    f"{DUMP_START_US + (n + 1) * 100},{'True' if n % 3 else 'False'},True\n"
                )
            out.write("".join(rows))


def ids_stored_once(ids: np.ndarray, first_id: int, count: int) -> tuple[bool, str]:
    """Whether ``ids`` are exactly ``first_id .. first_id + count - 1``, each once, and a line saying so."""
    expected = np.arange(first_id, first_id + count, dtype=np.int64)
    ok = len(ids) == count and bool(np.array_equal(np.sort(ids), expected))
    return ok, f"{len(ids):,} rows, {len(np.unique(ids)):,} distinct ids, {count:,} expected"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(core: int) -> Callable[[], None] | None:
    """A preexec_fn that pins a child process to one core (when there is more than one)."""
    cores = os.sched_getaffinity(0)
    return (lambda: os.sched_setaffinity(0, {core})) if core in cores and len(cores) > 1 else None


def start_sandbox(port: int, arguments: Sequence[str]) -> subprocess.Popen[bytes]:
    """``python -m include.cli sandbox --port PORT ARGUMENTS...`` on its own core, once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "include.cli", "sandbox", "--port", str(port), *arguments],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        preexec_fn=pinned(SERVER_CORE),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/ping", timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the sandbox did not start")
