"""dashboard/health.py: the health facts judged against now — fresh is ok, late a warning, stale or wrong failing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dashboard import health
from dashboard.health import ALL_SYMBOLS, FAILING, NOT_YET, OK, WARNING, Finding
from dashboard.queries import AuditMismatch, AuditSummary, GapSummary, Health, StreamState, SymbolFreshness

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def facts(**changes) -> Health:
    """A healthy pipeline at NOW: everything seconds old, no gaps left, the audit all matching."""
    healthy = Health(
        exchange="sandbox",
        published_at=NOW - 5 * SECOND,
        last_load_at=NOW - 10 * SECOND,
        marts_loaded_at=NOW - 12 * SECOND,
        freshness=[SymbolFreshness("BTCUSDT", NOW - 30 * SECOND), SymbolFreshness("ETHUSDT", NOW - 40 * SECOND)],
        gaps=GapSummary(windows=3, found=15, filled=10, holes=5, missing=0),
        audit=AuditSummary(checked=40, matched=40, mismatches=[]),
        streams=[StreamState("BTCUSDT", "0", NOW - 2 * SECOND, 0.4, "connected")],
    )
    return replace(healthy, **changes)


def levels(findings: list[Finding]) -> dict[tuple[str, str], str]:
    return {(finding.section, finding.subject): finding.level for finding in findings}


def test_a_healthy_pipeline_is_all_ok_and_has_no_problems():
    findings = health.judge(facts(), NOW)
    assert levels(findings) == {
        ("freshness", "BTCUSDT"): OK,
        ("freshness", "ETHUSDT"): OK,
        ("completeness", "BTCUSDT"): OK,
        ("completeness", "ETHUSDT"): OK,
        ("pipeline", "last load"): OK,
        ("pipeline", "last transform"): OK,
        ("gaps", ALL_SYMBOLS): OK,
        ("audit", ALL_SYMBOLS): OK,
        ("streams", "BTCUSDT"): OK,  # the symbol alone: no connection number before it
    }
    assert [finding.section for finding in findings] == [  # section by section
        "freshness",
        "freshness",
        "completeness",
        "completeness",
        "pipeline",
        "pipeline",
        "gaps",
        "audit",
        "streams",
    ]


@pytest.mark.parametrize(
    ("age", "level"),
    [
        (timedelta(0), OK),
        (health.CANDLE_LATE, OK),
        (health.CANDLE_LATE + SECOND, WARNING),
        (health.CANDLE_STALE, WARNING),
        (health.CANDLE_STALE + SECOND, FAILING),
        (timedelta(days=7), FAILING),
        (None, FAILING),  # no closed candle at all
    ],
)
def test_freshness_per_symbol_is_its_last_closed_candle_against_now(age, level):
    closed = None if age is None else NOW - age
    findings = health.freshness(facts(freshness=[SymbolFreshness("XRPETH", closed)]), NOW)
    assert findings == [Finding("freshness", "XRPETH", health.age_text(age), level)]


@pytest.mark.parametrize(
    ("age", "level"),
    [
        (health.RUN_LATE, OK),
        (health.RUN_LATE + SECOND, WARNING),
        (health.RUN_STALE, WARNING),
        (health.RUN_STALE + SECOND, FAILING),
        (None, FAILING),  # never loaded
    ],
)
@pytest.mark.parametrize(("field", "subject"), [("last_load_at", "last load"), ("marts_loaded_at", "last transform")])
def test_the_last_load_and_the_last_transform_are_judged_by_age(field, subject, age, level):
    findings = health.runs(facts(**{field: None if age is None else NOW - age}), NOW)
    judged = {finding.subject: finding for finding in findings}
    assert judged[subject].level == level
    assert judged[subject].value == health.age_text(age)
    other = ({"last load", "last transform"} - {subject}).pop()
    assert judged[other].level == OK


def test_trades_still_missing_after_repair_are_a_warning_and_holes_are_not():
    holes_only = health.gaps(facts())
    assert holes_only[0].level == OK
    assert holes_only[0].value == "3 windows: 15 found, 10 filled, 5 exchange-side holes, 0 missing"
    missing = health.gaps(facts(gaps=GapSummary(windows=4, found=18, filled=10, holes=5, missing=3)))
    assert missing[0].level == WARNING
    assert missing[0].value == "4 windows: 18 found, 10 filled, 5 exchange-side holes, 3 missing"


def test_any_audit_mismatch_fails_counting_all_of_them():
    mismatch = AuditMismatch("ETHUSDT", "5m", datetime(2026, 11, 24, 8, 5, tzinfo=UTC), "close: 1 != 2")
    summary = AuditSummary(checked=40, matched=38, mismatches=[mismatch], mismatched=2)
    findings = health.audit(facts(audit=summary))
    assert findings == [Finding("audit", ALL_SYMBOLS, "40 buckets checked, 38 matched, 2 mismatches", FAILING)]
    assert health.audit(facts())[0].value == "40 buckets checked, 40 matched, 0 mismatches"
    one = AuditSummary(checked=40, matched=39, mismatches=[mismatch], mismatched=1)
    assert health.audit(facts(audit=one))[0].value == "40 buckets checked, 39 matched, 1 mismatch"


@pytest.mark.parametrize(
    ("heartbeat_age", "lag", "level"),
    [
        (2 * SECOND, 0.4, OK),
        (2 * SECOND, None, OK),  # no trade yet: nothing to lag behind
        (2 * SECOND, health.STREAM_LAG_LATE, OK),
        (2 * SECOND, health.STREAM_LAG_LATE + 0.1, WARNING),  # alive but behind the exchange
        (health.HEARTBEAT_LATE + SECOND, 0.4, WARNING),
        (health.HEARTBEAT_STALE + SECOND, 0.4, FAILING),
        (health.HEARTBEAT_STALE + SECOND, 99.0, FAILING),
    ],
)
def test_each_stream_by_its_heartbeat_and_lag(heartbeat_age, lag, level):
    stream = StreamState("ETHUSDT", "1", NOW - heartbeat_age, lag, "connected")
    findings = health.streams(facts(streams=[stream]), NOW)
    assert [(finding.subject, finding.level) for finding in findings] == [("ETHUSDT", level)]
    lag_text = "?" if lag is None else f"{lag:.1f} s"
    judged = f"heartbeat {health.age_text(heartbeat_age)}, lag {lag_text}"
    assert findings[0].value == f"{judged}, connection 1 connected"  # its connection after, named


def test_the_worst_findings_come_first_failing_then_warning_then_not_yet():
    stale = facts(
        freshness=[SymbolFreshness("BTCUSDT", NOW - timedelta(minutes=5))],  # warning
        last_load_at=NOW - timedelta(hours=2),  # failing
        gaps=GapSummary(windows=1, found=3, filled=0, holes=0, missing=3),  # warning
        audit=AuditSummary(0, 0, []),  # not yet
    )
    judged = [(finding.section, finding.subject, finding.level) for finding in health.judge(stale, NOW)]
    assert judged == [
        ("pipeline", "last load", FAILING),
        ("freshness", "BTCUSDT", WARNING),  # then section by section
        ("gaps", ALL_SYMBOLS, WARNING),
        ("audit", ALL_SYMBOLS, NOT_YET),
        ("completeness", "BTCUSDT", OK),
        ("pipeline", "last transform", OK),
        ("streams", "BTCUSDT", OK),
    ]


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (None, "never"),
        (-SECOND, "in the future"),
        (timedelta(0), "0 s ago"),
        (59 * SECOND, "59 s ago"),
        (timedelta(minutes=1), "1 min ago"),
        (timedelta(minutes=59, seconds=59), "59 min ago"),
        (timedelta(hours=1), "1 h ago"),
        (timedelta(days=1, hours=23), "1 d ago"),
    ],
)
def test_ages_are_shown_in_their_largest_whole_unit(age, text):
    assert health.age_text(age) == text


def test_a_stream_without_connection_details_shows_none():
    stream = StreamState("ETHUSDT", None, NOW - SECOND, 0.4)
    [finding] = health.streams(facts(streams=[stream]), NOW)
    assert (finding.subject, finding.value) == ("ETHUSDT", "heartbeat 1 s ago, lag 0.4 s")


def test_checks_that_have_not_run_say_not_yet_neither_ok_nor_a_problem():
    """Right after start: no repair window and no audit yet. That is not "ok: 0 windows"."""
    fresh = facts(
        gaps=GapSummary(windows=0, found=0, filled=0, holes=0, missing=0), audit=AuditSummary(0, 0, []), streams=[]
    )
    findings = health.judge(fresh, NOW)
    assert [finding for finding in findings if finding.level != OK] == [
        Finding("gaps", ALL_SYMBOLS, "not yet: no repair window checked", NOT_YET),
        Finding("audit", ALL_SYMBOLS, "not yet: no closed candle audited", NOT_YET),
        Finding("streams", ALL_SYMBOLS, "not yet: no heartbeat in the warehouse", NOT_YET),
    ]


def test_closed_candles_with_trades_missing_are_counted_per_symbol_with_since_when():
    since = datetime(2026, 11, 24, 9, 7, tzinfo=UTC)
    freshness = [
        SymbolFreshness("BTCUSDT", NOW - 30 * SECOND, incomplete=3, incomplete_since=since),
        SymbolFreshness("ETHUSDT", NOW - 30 * SECOND),
    ]
    findings = health.completeness(facts(freshness=freshness))
    assert [(f.subject, f.value, f.level) for f in findings] == [
        ("BTCUSDT", "3 incomplete since 2026-11-24 09:07Z", WARNING),
        ("ETHUSDT", "none incomplete", OK),
    ]
