"""Backfill throughput against the real rate limit: how close to Binance's ceiling, with no 429.

The sandbox serves a generated dump over REST in historical mode with Binance's real limit (6000
weight per minute; historicalTrades weighs 25 and returns up to 1000 trades, so the ceiling is 240
calls, 240,000 trades, per minute). ``repair_window`` then imports the window from an empty lake,
as an operator importing history would. The run starts on a minute boundary and spans about three
minutes, so the rate is the steady one. Target (issue 4): at least 90% of the ceiling, zero 429s.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path

from bench.common import DUMP_START_US, free_port, start_sandbox, write_dump
from include.binance.client import BinanceClient
from include.binance.protocol import WEIGHTS
from include.lake.store import LocalStore
from include.lake.trades import read_trade_ids
from include.repair.repair import repair_window
from include.timeutil import from_us

WEIGHT_LIMIT = 6000
CEILING_TRADES_PER_SECOND = WEIGHT_LIMIT / WEIGHTS["historicalTrades"] * 1000 / 60


def main(count: int = 700_000) -> bool:
    print(f"\n== backfill: historicalTrades at the 6000-weight limit ({count:,} trades) ==", flush=True)
    with tempfile.TemporaryDirectory() as work:
        dump = Path(work) / "BTCUSDT-trades-2026-01-01.csv"
        write_dump(dump, count)
        port = free_port()
        sandbox = start_sandbox(
            port, ["--symbols", "BTCUSDT", "--replay", str(dump), "--weight-limit", str(WEIGHT_LIMIT)]
        )
        try:
            lake = LocalStore(Path(work) / "lake")
            start = from_us(DUMP_START_US)
            with BinanceClient(f"http://127.0.0.1:{port}", weight_limit=WEIGHT_LIMIT) as client:
                trades_per_minute: Counter[int] = Counter()
                fetch = client.historical_trades

                def counted(symbol: str, from_id: int, limit: int = 1000) -> list[dict[str, object]]:
                    rows = fetch(symbol, from_id, limit)
                    trades_per_minute[int(time.time() // 60)] += len(rows)
                    return rows

                client.historical_trades = counted  # type: ignore[method-assign]
                # Start on a minute boundary: a run that began mid-minute would get a whole extra
                # minute's budget for a part of one and overstate the rate.
                time.sleep(60 - time.time() % 60 + 0.05)
                began = time.perf_counter()
                report = repair_window(client, lake, "BTCUSDT", start, start + timedelta(hours=1))
                seconds = time.perf_counter() - began
                stats = client.stats
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin") as response:
                server = json.load(response)["rest"]
        finally:
            sandbox.terminate()
            sandbox.wait(30)
        stored = len(read_trade_ids(lake, "BTCUSDT"))
    # The budget is spent in a burst at the start of each minute, so wall-clock rate over a run
    # that ends early in its last minute overstates what can be sustained. The figure that counts
    # is trades per *full* minute of rate limit: every minute but the last, partial one.
    full_minutes = sorted(trades_per_minute)[:-1]
    sustained = sum(trades_per_minute[m] for m in full_minutes) / (60 * len(full_minutes)) if full_minutes else 0.0
    ratio = sustained / CEILING_TRADES_PER_SECOND
    print(f"trades imported               : {report.filled:,} in {seconds:.1f} s ({stored:,} ids in the lake)")
    print(f"wall-clock rate               : {report.filled / seconds:>8,.0f} trades/s (bursts at each minute's start)")
    print(f"sustained, per full minute    : {sustained:>8,.0f} trades/s over {len(full_minutes)} full minutes")
    print(f"rate-limit ceiling            : {CEILING_TRADES_PER_SECOND:>8,.0f} trades/s (240 calls x 1000 / min)")
    print(f"throughput / ceiling          : {ratio:>8.2f}   (target >= 0.90)")
    refused = f"server counted 429: {server['429']}, 418: {server['418']}"
    print(f"429s seen by the client       : {stats.rate_limited:>8}   ({refused})")
    print(f"requests                      : {stats.requests:>8}")
    return ratio >= 0.9 and stats.rate_limited == 0 and server["429"] == 0 and server["418"] == 0 and stored == count


if __name__ == "__main__":
    sys.exit(0 if main(int(sys.argv[1]) if len(sys.argv) > 1 else 700_000) else 1)
