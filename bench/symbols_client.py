"""The symbols benchmark's stream writer, in a process of its own: ``python -m bench.symbols_client``.

It runs the real stream worker (``include.ingest.run.run_worker``, the ``stream`` command's) for a
fixed time, writing to a local lake through a store that counts every PUT by kind of object, and
prints one JSON line: the worker's counters, the PUTs and bytes per kind, and the start gaps among
the gap records (a new writer's, once per symbol, not a cost per hour).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from include.lake.keys import (
    GAP_WRITES_PREFIX,
    GAPS_PREFIX,
    HEARTBEAT_PREFIX,
    QUARANTINE_PREFIX,
    TRADES_PREFIX,
    WRITES_PREFIX,
)
from include.lake.store import LocalStore, ObjectInfo

# Each kind of object by its prefix (include/lake/keys.py); the order is the report's.
KINDS = {
    TRADES_PREFIX: "trade files",
    HEARTBEAT_PREFIX: "heartbeats",
    WRITES_PREFIX: "write markers",
    GAPS_PREFIX: "gap records",
    GAP_WRITES_PREFIX: "gap markers",
    QUARANTINE_PREFIX: "quarantine",
}


def kind_of(key: str) -> str:
    return next((kind for prefix, kind in KINDS.items() if key.startswith(prefix)), "other")


class CountingStore:
    """A local lake that counts what it is asked: PUTs and their bytes by kind, reads by call."""

    def __init__(self, root: Path) -> None:
        self.store = LocalStore(root)
        self.url = self.store.url
        self.puts: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()
        self.start_gaps = 0
        self._lock = threading.Lock()  # flushes write from a thread

    def put(self, key: str, data: bytes) -> None:
        self.store.put(key, data)
        kind = kind_of(key)
        with self._lock:
            self.puts[kind] += 1
            self.bytes[kind] += len(data)
            if kind == "gap records" and json.loads(data)["kind"] == "start":
                self.start_gaps += 1

    def get(self, key: str) -> bytes:
        self.reads["get"] += 1
        return self.store.get(key)

    def exists(self, key: str) -> bool:
        self.reads["exists"] += 1
        return self.store.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.reads["list"] += 1
        return self.store.list(prefix)

    def delete(self, key: str) -> None:
        self.store.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the sandbox's port on 127.0.0.1")
    parser.add_argument("--symbols", required=True, help="comma separated")
    parser.add_argument("--seconds", type=float, required=True, help="how long to stream")
    parser.add_argument("--flush-seconds", type=float, required=True)
    parser.add_argument("--lake", type=Path, required=True)
    args = parser.parse_args()

    from include.config import load_settings
    from include.ingest.run import run_worker

    sandbox = f"127.0.0.1:{args.port}"
    settings = load_settings(
        {
            "BINANCE_REST_URL": f"http://{sandbox}",
            "BINANCE_WS_URL": f"ws://{sandbox}",
            "LAKE_URL": f"file://{args.lake}",
        }
    )
    lake = CountingStore(args.lake)
    symbols = tuple(args.symbols.split(","))
    began = time.perf_counter()
    stats = run_worker(settings, symbols, duration=args.seconds, flush_seconds=args.flush_seconds, lake=lake)
    seconds = time.perf_counter() - began
    figures = {"window": args.seconds, "seconds": seconds, "stats": stats, "puts": lake.puts, "bytes": lake.bytes}
    print(json.dumps({**figures, "reads": lake.reads, "start_gaps": lake.start_gaps}))


if __name__ == "__main__":
    main()
