"""Judging the pipeline's health facts (``MarketQueries.health()``): what is fresh, stale or failing.

Pure functions of the facts and ``now``, so the thresholds are tested without a page. The facts come
from the published snapshot; their judgement belongs here, next to the thresholds and why they are so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

OK, WARNING, FAILING = "ok", "warning", "failing"
NOT_YET = "not yet"  # a check that has not run: neither ok nor wrong
LEVELS = (FAILING, WARNING, NOT_YET, OK)  # the worst first

# The newest closed 1m candle closed at most a minute ago, and the marts follow the stream by tens of
# seconds (flush every 5 s, load, transform, publish): three minutes is late, fifteen is stale.
CANDLE_LATE, CANDLE_STALE = timedelta(minutes=3), timedelta(minutes=15)
# Loads and transforms run every few seconds to a minute under `make up`.
RUN_LATE, RUN_STALE = timedelta(minutes=5), timedelta(minutes=30)
# A stream writes its heartbeat with every flush (seconds); a minute without one is a worry.
HEARTBEAT_LATE, HEARTBEAT_STALE = timedelta(minutes=1), timedelta(minutes=5)
STREAM_LAG_LATE = 10.0  # seconds behind the exchange's trade time
ALL_SYMBOLS = "all symbols"  # the subject of a check over every symbol at once


@dataclass(frozen=True)
class Finding:
    """One judged fact: what, its value as shown, and ok / warning / failing."""

    section: str
    subject: str
    value: str
    level: str  # one of LEVELS


def age_text(age: timedelta | None) -> str:
    if age is None:
        return "never"
    seconds = int(age.total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _by_age(age: timedelta | None, late: timedelta, stale: timedelta) -> str:
    if age is None or age > stale:
        return FAILING
    return WARNING if age > late else OK


def _age(moment: datetime | None, now: datetime) -> timedelta | None:
    return None if moment is None else now - moment


def freshness(health: Any, now: datetime) -> list[Finding]:
    """Per symbol, its newest closed candle against now."""
    findings = []
    for item in health.freshness:
        age = _age(item.last_closed_close_time, now)
        findings.append(Finding("freshness", item.symbol, age_text(age), _by_age(age, CANDLE_LATE, CANDLE_STALE)))
    return findings


def runs(health: Any, now: datetime) -> list[Finding]:
    """The last load into the warehouse and the last transform (the newest load the marts include)."""
    findings = []
    for subject, moment in (("last load", health.last_load_at), ("last transform", health.marts_loaded_at)):
        age = _age(moment, now)
        findings.append(Finding("pipeline", subject, age_text(age), _by_age(age, RUN_LATE, RUN_STALE)))
    return findings


def completeness(health: Any) -> list[Finding]:
    """Per symbol, its closed 1m candles with trade ids missing, and since when (the oldest one's open):
    what a repair has yet to fill (or the exchange does not have)."""
    findings = []
    for item in health.freshness:
        if not item.incomplete:
            findings.append(Finding("completeness", item.symbol, "none incomplete", OK))
            continue
        value = f"{item.incomplete} incomplete since {item.incomplete_since:%Y-%m-%d %H:%M}Z"
        findings.append(Finding("completeness", item.symbol, value, WARNING))
    return findings


def gaps(health: Any) -> list[Finding]:
    """The completeness ledger: missing trades that no repair explains are a warning; exchange-side holes
    are explained (the exchange has no such trades), so they are shown, not flagged. No window yet: not yet."""
    summary = health.gaps
    if not summary.windows:
        return [Finding("gaps", ALL_SYMBOLS, "not yet: no repair window checked", NOT_YET)]
    value = (
        f"{summary.windows} windows: {summary.found} found, {summary.filled} filled, "
        f"{summary.holes} exchange-side holes, {summary.missing} missing"
    )
    return [Finding("gaps", ALL_SYMBOLS, value, WARNING if summary.missing else OK)]


def audit(health: Any) -> list[Finding]:
    """The audit against the exchange's klines: any mismatch is a failure. Nothing audited yet: not yet."""
    summary = health.audit
    if not summary.checked:
        return [Finding("audit", ALL_SYMBOLS, "not yet: no closed candle audited", NOT_YET)]
    mismatches = summary.mismatched or len(summary.mismatches)
    differ = "1 mismatch" if mismatches == 1 else f"{mismatches} mismatches"
    value = f"{summary.checked} buckets checked, {summary.matched} matched, {differ}"
    return [Finding("audit", ALL_SYMBOLS, value, FAILING if mismatches else OK)]


def streams(health: Any, now: datetime) -> list[Finding]:
    """Per symbol's stream: its heartbeat's age and its lag behind the exchange, then its connection.
    No heartbeat at all: not yet (the stream has not run, or runs outside Airflow)."""
    if not health.streams:
        return [Finding("streams", ALL_SYMBOLS, "not yet: no heartbeat in the warehouse", NOT_YET)]
    findings = []
    for item in health.streams:
        age = _age(item.updated_at, now)
        level = _by_age(age, HEARTBEAT_LATE, HEARTBEAT_STALE)
        lag = item.lag_seconds
        if level == OK and lag is not None and lag > STREAM_LAG_LATE:
            level = WARNING
        lag_text = "?" if lag is None else f"{lag:.1f} s"
        value = f"heartbeat {age_text(age)}, lag {lag_text}"
        if item.connection is not None:
            value += f", connection {item.connection}" + (f" {item.state}" if item.state else "")
        findings.append(Finding("streams", item.symbol, value, level))
    return findings


def judge(health: Any, now: datetime) -> list[Finding]:
    """Every finding, the worst first (failing, warning, not yet, ok), section by section within each."""
    findings = [
        *freshness(health, now),
        *completeness(health),
        *runs(health, now),
        *gaps(health),
        *audit(health),
        *streams(health, now),
    ]
    return sorted(findings, key=lambda finding: LEVELS.index(finding.level))
