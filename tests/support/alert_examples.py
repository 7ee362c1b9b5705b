"""Alerts as the evaluation stores them, for the delivery tests: a market alert and a pipeline incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from include.alerts.model import MARKET, PIPELINE, Alert, alert_id


def market_alert(minute: int = 5, message: str | None = None) -> Alert:
    """A price cross on the BTCUSDT 1m candle of 17:``minute`` (a different alert for each minute)."""
    open_time = datetime(2026, 12, 7, 17, minute, tzinfo=UTC)
    return Alert(
        alert_id=alert_id("test", "btc-100k", minute),
        kind=MARKET,
        rule_id="btc-100k",
        subject="BTCUSDT 1m",
        message=message
        or f"btc-100k: BTCUSDT 1m: close crosses 100000 (up); close 100012.5 on the candle of "
        f"2026-12-07 17:{minute:02d} UTC",
        event_time=open_time + timedelta(minutes=1),
        symbol="BTCUSDT",
        interval="1m",
        open_time=open_time,
        value=Decimal("100012.5"),
    )


def stale_incident() -> Alert:
    """A stale-symbol incident, open."""
    return Alert(
        alert_id=alert_id("test", "stale_symbol", "ETHUSDT"),
        kind=PIPELINE,
        rule_id="stale_symbol",
        subject="ETHUSDT",
        message="no closed candle since 2026-12-07 17:00 UTC",
        event_time=datetime(2026, 12, 7, 17, 0, tzinfo=UTC),
        symbol="ETHUSDT",
    )
