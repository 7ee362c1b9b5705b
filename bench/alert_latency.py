"""Alerts under `make up`: a market alert's time from the close of the candle that fired it to the local
webhook (issue 23: p95 <= 30 s). Run by bench/live_edge.py on its stack, in its quiet phases (a smoke
run, whose figures mean nothing, in every phase since the rules were added).

The stack is started with the Airflow connection ``alerts_webhook`` pointing at a webhook receiver of
this process (tests/support/receivers.py). Once candles are drawn, a grid of ``price_cross`` rules is
added the way the dashboard adds them (include/alerts/user_rules.py, into the lake): levels around the
last close, a third of a typical minute's move apart, so most minutes cross a few. Every crossing the
exchange made is known: the sandbox's own 1m klines, evaluated with the same rules
(include/alerts/market.py), give the alert ids that must arrive. Each that arrived is timed from its
candle's close (``open_time`` + 1 minute) to its arrival; the check is that every expected alert of the
measured candles arrived exactly once, and nothing else did.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise

import numpy as np

from bench.report import Report, Target
from include.alerts.market import Candle, evaluate_rule
from include.alerts.rules import Rule
from include.alerts.user_rules import add_user_rule
from include.binance.client import BinanceClient
from include.lake.store import ObjectStore
from include.timeutil import MINUTE_US, from_us, now_us
from tests.support.receivers import WebhookReceiver

TARGET_P95_SECONDS = 30.0
GRID_PREFIX = "bench-grid-"
GRID_LEVELS = 30  # on each side of the last close
DELIVERY_TIMEOUT_SECONDS = 180  # after a candle's close, by when its alerts must have arrived


@dataclass
class AlertWindow:
    """A quiet stretch whose candles are measured: those closing in [start_us, end_us]."""

    start_us: int
    end_us: int


@dataclass
class PriceGrid:
    symbol: str
    rules: list[Rule]
    added_us: int
    windows: list[AlertWindow] = field(default_factory=list)

    def measure_from(self, start_us: int) -> int:
        """A rule added on the dashboard is evaluated from when it was added (its ``since``)."""
        return max(start_us, self.added_us)


def add_price_grid(lake: ObjectStore, sandbox_url: str, symbol: str, symbols: tuple[str, ...]) -> PriceGrid:
    """Price-cross rules around ``symbol``'s last close, stored as dashboard rules in the stack's lake."""
    with BinanceClient(sandbox_url) as client:
        klines = client.klines(symbol, "1m", start_time_us=now_us() - 30 * MINUTE_US, end_time_us=now_us(), limit=40)
    closes = [Decimal(row[4]) for row in klines]
    moves = [abs(later - earlier) for earlier, later in pairwise(closes) if later != earlier]
    step = max((statistics.median(moves) / 3).quantize(Decimal("0.01")), Decimal("0.01")) if moves else Decimal(1)
    rules = []
    for index in range(-GRID_LEVELS, GRID_LEVELS + 1):
        fields = {"id": f"{GRID_PREFIX}{index + GRID_LEVELS:03d}", "type": "price_cross", "symbol": symbol}
        fields |= {"interval": "1m", "level": str(closes[-1] + index * step), "direction": "both"}
        rules.append(add_user_rule(lake, fields, symbols, ()))
    return PriceGrid(symbol, rules, now_us())


def expected_alerts(grid: PriceGrid, sandbox_url: str) -> dict[str, int]:
    """Every grid alert of the measured candles, by id: the candle's close (µs), from the exchange's klines."""
    first = min(window.start_us for window in grid.windows) - 2 * MINUTE_US
    last = max(window.end_us for window in grid.windows)
    with BinanceClient(sandbox_url) as client:
        rows = client.klines(grid.symbol, "1m", start_time_us=first, end_time_us=last, limit=1000)
    candles = [
        Candle(
            from_us(int(row[0])), from_us(int(row[6])), Decimal(row[1]), Decimal(row[4]), Decimal(row[5]), True, True
        )
        for row in rows
        if int(row[0]) + MINUTE_US <= last
    ]
    measured = [(grid.measure_from(window.start_us), window.end_us) for window in grid.windows]
    expected = {}
    for rule in grid.rules:
        for alert in evaluate_rule(rule, candles, from_us(first)):
            close_us = int(alert.open_time.timestamp() * 1_000_000) + MINUTE_US
            if any(start <= close_us <= end for start, end in measured):
                expected[alert.alert_id] = close_us
    return expected


def wait_for_deliveries(receiver: WebhookReceiver, expected: dict[str, int]) -> None:
    """Until every expected alert arrived, or the last measured close is DELIVERY_TIMEOUT_SECONDS old."""
    deadline = (max(expected.values(), default=now_us()) / 1e6) + DELIVERY_TIMEOUT_SECONDS
    while time.time() < deadline and not set(expected) <= _arrived(receiver):
        time.sleep(1)


def _arrived(receiver: WebhookReceiver) -> set[str]:
    return {request.body["alert"]["alert_id"] for request in list(receiver.requests) if _is_grid(request.body)}


def _is_grid(body: dict) -> bool:
    alert = body.get("alert") or {}
    return alert.get("event") == "fired" and str(alert.get("rule_id", "")).startswith(GRID_PREFIX)


def report_alert_latency(report: Report, receiver: WebhookReceiver, expected: dict[str, int]) -> None:
    """The figures and the exactly-once check of the measured grid alerts."""
    grid_requests = [request for request in list(receiver.requests) if _is_grid(request.body)]
    copies = Counter(request.body["alert"]["alert_id"] for request in grid_requests)
    latencies = [
        request.received_at - expected[request.body["alert"]["alert_id"]] / 1e6
        for request in grid_requests
        if request.body["alert"]["alert_id"] in expected
    ]
    candles = len(set(expected.values()))
    p95 = float(np.percentile(latencies, 95)) if latencies else float("nan")
    p50 = float(np.percentile(latencies, 50)) if latencies else float("nan")
    report.figure("market alert to webhook, p50", p50, "s", 2)
    report.figure("market alert to webhook, p95", p95, "s", 2, Target("<=", TARGET_P95_SECONDS))
    report.figure("market alert to webhook, max", max(latencies, default=float("nan")), "s", 2)
    report.figure("market alerts timed", len(latencies), "alerts", note=f"over {candles} candles' closes")
    missing = sorted(set(expected) - set(copies))
    twice = sorted(alert_id for alert_id, count in copies.items() if count > 1)
    report.check(
        "every crossing reached the webhook once",
        bool(expected) and not missing and not twice,
        f"{len(expected)} expected, {len(missing)} missing, {len(twice)} twice",
    )


def quiet_window(grid: PriceGrid, sandbox_url: str, seconds: float, longest: float) -> None:
    """Measure the candles closing from now for ``seconds`` (the caller keeps the stack quiet), longer
    (up to ``longest``) until one of them crossed a level: a short run must time at least one alert."""
    window = AlertWindow(now_us(), now_us())
    grid.windows.append(window)
    started = time.monotonic()
    while True:
        time.sleep(1)
        window.end_us = now_us()
        elapsed = time.monotonic() - started
        if elapsed >= longest or (elapsed >= seconds and expected_alerts(grid, sandbox_url)):
            return
