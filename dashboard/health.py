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

# The newest closed 1m candle closed at most a minute ago, and the marts follow the stream by tens of
# seconds (flush every 5 s, load, transform, publish): three minutes is late, fifteen is stale.
CANDLE_LATE, CANDLE_STALE = timedelta(minutes=3), timedelta(minutes=15)
# Loads and transforms run every few seconds to a minute under `make up`.
RUN_LATE, RUN_STALE = timedelta(minutes=5), timedelta(minutes=30)
# A stream writes its heartbeat with every flush (seconds); a minute without one is a worry.
HEARTBEAT_LATE, HEARTBEAT_STALE = timedelta(minutes=1), timedelta(minutes=5)
STREAM_LAG_LATE = 10.0  # seconds behind the exchange's trade time


@dataclass(frozen=True)
class Finding:
    """One judged fact: what, its value as shown, and ok / warning / failing."""

    section: str
    subject: str
    value: str
    level: str  # OK, WARNING, FAILING or NOT_YET
    why: str = ""  # for warnings and failures: one line saying what is wrong


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
        level = _by_age(age, CANDLE_LATE, CANDLE_STALE)
        why = f"{item.symbol}: last closed candle {age_text(age)}" if level != OK else ""
        findings.append(Finding("freshness", item.symbol, age_text(age), level, why))
    return findings


def runs(health: Any, now: datetime) -> list[Finding]:
    """The last load into the warehouse and the last transform (the newest load the marts include)."""
    findings = []
    for subject, moment in (("last load", health.last_load_at), ("last transform", health.marts_loaded_at)):
        age = _age(moment, now)
        level = _by_age(age, RUN_LATE, RUN_STALE)
        findings.append(Finding("pipeline", subject, age_text(age), level, f"{subject} {age_text(age)}"))
    return findings


def completeness(health: Any) -> list[Finding]:
    """Per symbol, its closed 1m candles with trade ids missing, and since when (the oldest one's open):
    what a repair has yet to fill (or the exchange does not have)."""
    findings = []
    for item in health.freshness:
        if not item.incomplete:
            findings.append(Finding("completeness", item.symbol, "none incomplete", OK))
            continue
        since = f"{item.incomplete_since:%Y-%m-%d %H:%M}Z"
        value = f"{item.incomplete} incomplete since {since}"
        why = f"{item.symbol}: {item.incomplete} closed 1m candles with trades missing, the oldest {since}"
        findings.append(Finding("completeness", item.symbol, value, WARNING, why))
    return findings


def gaps(health: Any) -> list[Finding]:
    """The completeness ledger: missing trades that no repair explains are a warning; exchange-side holes
    are explained (the exchange has no such trades), so they are shown, not flagged. No window yet: not yet."""
    summary = health.gaps
    if not summary.windows:
        return [Finding("gaps", "completeness", "not yet: no repair window checked", NOT_YET)]
    level = WARNING if summary.missing else OK
    value = (
        f"{summary.windows} windows: {summary.found} found, {summary.filled} filled, "
        f"{summary.holes} exchange-side holes, {summary.missing} missing"
    )
    return [Finding("gaps", "completeness", value, level, f"{summary.missing} trades missing after repair")]


def audit(health: Any) -> list[Finding]:
    """The audit against the exchange's klines: any mismatch is a failure. Nothing audited yet: not yet."""
    summary = health.audit
    if not summary.checked:
        return [Finding("audit", "against the exchange", "not yet: no closed candle audited", NOT_YET)]
    mismatches = summary.mismatched or len(summary.mismatches)
    level = FAILING if mismatches else OK
    value = f"{summary.checked} buckets checked, {summary.matched} matched, {mismatches} mismatches"
    why = ""
    if summary.mismatches:
        first = summary.mismatches[0]
        when = f"{first.open_time:%Y-%m-%d %H:%M}Z"
        why = f"{mismatches} candles differ from the exchange, first {first.symbol} {first.interval} {when}"
    return [Finding("audit", "against the exchange", value, level, why)]


def streams(health: Any, now: datetime) -> list[Finding]:
    """Per symbol's stream: its heartbeat's age and its lag behind the exchange, then its connection."""
    findings = []
    for item in health.streams:
        age = _age(item.updated_at, now)
        level = _by_age(age, HEARTBEAT_LATE, HEARTBEAT_STALE)
        lag = item.lag_seconds
        if level == OK and lag is not None and lag > STREAM_LAG_LATE:
            level = WARNING
        lag_text = "?" if lag is None else f"{lag:.1f} s"
        value = f"heartbeat {age_text(age)}, lag {lag_text}"
        why = f"stream {item.symbol}: {value}"
        if item.connection is not None:
            value += f", connection {item.connection}" + (f" {item.state}" if item.state else "")
        findings.append(Finding("streams", item.symbol, value, level, why))
    return findings


def judge(health: Any, now: datetime) -> list[Finding]:
    """Every finding, section by section; ``why`` kept only where something is wrong."""
    findings = [
        *freshness(health, now),
        *completeness(health),
        *runs(health, now),
        *gaps(health),
        *audit(health),
        *streams(health, now),
    ]
    return [f if f.level in (WARNING, FAILING) else Finding(f.section, f.subject, f.value, f.level) for f in findings]


def problems(findings: list[Finding]) -> list[Finding]:
    """The findings to show in warning colours, the failing ones first."""
    return sorted((f for f in findings if f.level in (WARNING, FAILING)), key=lambda f: f.level != FAILING)
