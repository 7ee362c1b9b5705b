"""A forming kline folded in runs, its runs' figures shared by the klines of every interval
(``include/sandbox/forming_kline.py``), equals REST's kline of the same trades at each step."""

from __future__ import annotations

import random

from include.sandbox.forming_kline import FormingKline
from include.sandbox.klines import INTERVALS, bucket_open, klines
from include.sandbox.store import Trade, TradeStore

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a bucket open of every interval


def test_klines_of_every_interval_folded_in_runs_equal_rest() -> None:
    rng = random.Random(7)
    store = TradeStore("BTCUSDT")
    forming = {interval: FormingKline(store, interval, bucket_open(interval, START_MS)) for interval in INTERVALS}
    trade_id, time_us = 1, START_MS * 1000
    for run in range(6):
        for _ in range(rng.randint(1, 40)):  # both sides: the taker columns count only the buys
            price, qty = 6_000_000_000_000 + rng.randint(-500, 500) * 1_000_000, rng.randint(1, 900) * 1000
            store.append(Trade(trade_id, time_us, price, qty, price * qty // 10**8, rng.random() < 0.5))
            trade_id, time_us = trade_id + 1, time_us + rng.randint(1, 400_000)
        # Some klines skip a run, so the runs they fold differ from the others' (and from the cache's).
        for interval, kline in forming.items():
            if (run + len(interval)) % 3:
                kline.fold()
    for interval, kline in forming.items():
        kline.fold()  # a kline that has closed (the first 1s, 1m...) takes only its own trades
        (rest,) = klines(store, interval, time_us // 1000, start_ms=kline.open_ms, limit=1)
        assert kline.row() == rest, interval
    assert forming["1h"].count == len(store)  # every run was folded by some kline
