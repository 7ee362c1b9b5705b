"""``python -m bench --smoke live_edge``: the live-edge benchmark against a real ``make up`` stack, short.

It starts every service (sandbox, Airflow, dashboard), reads the chart in headless Chromium, and times
trades to the chart and two gaps to the lake and to complete candles. No timing is asserted here
(``make bench`` reports them against their targets): this catches a benchmark that no longer runs or
whose checks fail (the chart never counted a trade, a gap's ids never reached the lake, or its
candles were never drawn complete).
"""

from __future__ import annotations

import pytest

from tests.support.bench import SmokeRun, printed_figures, run_smoke, written_figures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# The stack's cold start, its first warehouse run, two short measurements and a gap: several minutes
# on a quiet 2-core machine; three times that before a hung run fails.
DEADLINE_SECONDS = 1500
FIGURES = [
    "freshness quiet, p50",
    "freshness quiet, p95",
    "freshness quiet, max",
    "freshness busy, p50",
    "freshness busy, p95",
    "freshness busy, max",
    "gap to lake, max",
    "gap to chart, max",
]
# The alerts section, measured on the same stack (bench/alert_latency.py).
ALERT_FIGURES = [
    "market alert to webhook, p50",
    "market alert to webhook, p95",
    "market alert to webhook, max",
    "market alerts timed",
]
CHECKS = [
    "the chart counted trades, quiet",
    "the chart counted trades, busy",
    "every gap's ids reached the lake",
    "every gap's candles were drawn complete",
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    return run_smoke(["live_edge"], DEADLINE_SECONDS, tmp_path_factory.mktemp("bench") / "results.md")


def test_the_live_edge_smoke_prints_every_figure_and_passes_its_checks(smoke: SmokeRun) -> None:
    assert "Traceback" not in smoke.stderr, smoke.stderr
    section = smoke.sections.get("live_edge")
    assert section is not None, f"{smoke.stdout}\n{smoke.stderr}"
    missing = [label for label in FIGURES if label not in section.figures]
    assert not missing, f"figures missing or not numbers: {missing}\n{smoke.stdout}\n{smoke.stderr}"
    assert {label: section.checks.get(label) for label in CHECKS} == dict.fromkeys(CHECKS, "ok"), smoke.stdout
    alerts = smoke.sections.get("alerts")
    assert alerts is not None, f"{smoke.stdout}\n{smoke.stderr}"
    assert [label for label in ALERT_FIGURES if label not in alerts.figures] == [], smoke.stdout
    assert alerts.checks == {"every crossing reached the webhook once": "ok"}, smoke.stdout
    assert smoke.returncode == 0, f"{smoke.stdout}\n{smoke.stderr}"


def test_the_results_file_holds_every_figure_printed(smoke: SmokeRun) -> None:
    expected = {("live_edge", label) for label in FIGURES} | {("alerts", label) for label in ALERT_FIGURES}
    printed = {key: value for key, value in printed_figures(smoke).items() if key in expected}
    assert set(printed) == expected, smoke.stdout
    written = written_figures(smoke)
    assert {key: written.get(key) for key in expected} == printed
