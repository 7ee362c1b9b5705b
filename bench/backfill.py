"""Backfill throughput against the real rate limit: how close to Binance's ceiling, with no 429.

The sandbox serves a generated dump over REST in historical mode with Binance's real limit (6000
weight per minute; historicalTrades weighs 25 and returns up to 1000 trades, so the ceiling is 240
calls, 240,000 trades, per minute). ``repair_window`` then imports the window from an empty lake,
as an operator importing history would. The run starts on a minute boundary and spans about three
minutes, so the rate is the steady one. Target (issue 4): at least 90% of the ceiling, zero 429s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DUMP_START_US, free_port, ids_stored_once, start_sandbox, write_dump
from bench.report import Report, Target
from include.binance.client import BinanceClient, RequestStats
from include.binance.protocol import WEIGHTS
from include.lake.store import LocalStore
from include.lake.trades import read_trades
from include.repair.ledger import WindowReport
from include.repair.repair import repair_window
from include.timeutil import from_us

WEIGHT_LIMIT = 6000
CEILING_TRADES_PER_SECOND = WEIGHT_LIMIT / WEIGHTS["historicalTrades"] * 1000 / 60
FULL_TRADES, SMOKE_TRADES = 700_000, 3_000
FIRST_ID = 3_100_000_001  # not 1: nothing may assume where a symbol's ids start


@dataclass
class Run:
    report: WindowReport
    seconds: float
    stats: RequestStats
    server: dict[str, Any]  # the sandbox's REST counters (429s, 418s) from /admin
    trades_per_minute: Counter[int]
    stored_ids: np.ndarray


def import_window(port: int, lake: LocalStore, align: bool) -> Run:
    """``repair_window`` over the dump's hour from an empty lake, counting trades per wall-clock minute."""
    start = from_us(DUMP_START_US)
    with BinanceClient(f"http://127.0.0.1:{port}", weight_limit=WEIGHT_LIMIT) as client:
        trades_per_minute: Counter[int] = Counter()
        fetch = client.historical_trades

        def counted(symbol: str, from_id: int, limit: int = 1000) -> list[dict[str, object]]:
            rows = fetch(symbol, from_id, limit)
            trades_per_minute[int(time.time() // 60)] += len(rows)
            return rows

        client.historical_trades = counted  # type: ignore[method-assign]
        if align:
            # Start on a minute boundary: a run that began mid-minute would get a whole extra
            # minute's budget for a part of one and overstate the rate.
            time.sleep(60 - time.time() % 60 + 0.05)
        began = time.perf_counter()
        report = repair_window(client, lake, "BTCUSDT", start, start + timedelta(hours=1))
        seconds = time.perf_counter() - began
        stats = client.stats
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin") as response:
        server = json.load(response)["rest"]
    ids = read_trades(lake, "BTCUSDT")["trade_id"].to_numpy()
    return Run(report, seconds, stats, server, trades_per_minute, ids)


def sustained_rate(trades_per_minute: Counter[int]) -> tuple[float, int]:
    """Trades per second over every full minute of rate limit, and how many full minutes there were.

    The budget is spent in a burst at the start of each minute, so the wall-clock rate over a run
    that ends early in its last minute overstates what can be sustained: the last, partial minute
    does not count.
    """
    full_minutes = sorted(trades_per_minute)[:-1]
    if not full_minutes:
        return 0.0, 0
    return sum(trades_per_minute[m] for m in full_minutes) / (60 * len(full_minutes)), len(full_minutes)


def main(smoke: bool = False, count: int | None = None) -> bool:
    count = count or (SMOKE_TRADES if smoke else FULL_TRADES)
    report = Report(f"backfill: historicalTrades at the 6000-weight limit ({count:,} trades)")
    with tempfile.TemporaryDirectory() as work:
        dump = Path(work) / "BTCUSDT-trades-2026-01-01.csv"
        write_dump(dump, count, FIRST_ID)
        port = free_port()
        sandbox = start_sandbox(
            port, ["--symbols", "BTCUSDT", "--replay", str(dump), "--weight-limit", str(WEIGHT_LIMIT)]
        )
        try:
            run = import_window(port, LocalStore(Path(work) / "lake"), align=not smoke)
        finally:
            sandbox.terminate()
            sandbox.wait(30)
    sustained, full_minutes = sustained_rate(run.trades_per_minute)
    filled = run.report.filled
    report.figure("trades imported", filled, "trades", note=f"in {run.seconds:.1f} s")
    report.figure("wall-clock rate", filled / run.seconds, "trades/s", note="bursts at each minute's start")
    report.figure("sustained, per full minute", sustained, "trades/s", note=f"over {full_minutes} full minutes")
    report.figure("rate-limit ceiling", CEILING_TRADES_PER_SECOND, "trades/s", note="240 calls x 1000 / min")
    report.figure("throughput / ceiling", sustained / CEILING_TRADES_PER_SECOND, digits=2, target=Target(">=", 0.9))
    report.figure("requests", run.stats.requests, "requests")
    refused = f"client saw {run.stats.rate_limited}, server counted 429: {run.server['429']}, 418: {run.server['418']}"
    no_refusals = run.stats.rate_limited == 0 and run.server["429"] == 0 and run.server["418"] == 0
    report.check("no 429 and no 418", no_refusals, refused)
    once, detail = ids_stored_once(run.stored_ids, FIRST_ID, count)
    report.check("all ids stored exactly once", once, detail)
    return report.passed(enforce_targets=not smoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_TRADES:,} trades, no minute alignment, no target")
    parser.add_argument("--trades", type=int, help=f"how many trades (default {FULL_TRADES:,})")
    arguments = parser.parse_args()
    sys.exit(0 if main(arguments.smoke, arguments.trades) else 1)
