"""``make bench`` at a tiny size (``python -m bench --smoke``): every benchmark runs to the end,
prints each of its figures as a number, and passes the correctness checks it makes (every id stored
exactly once, no 429, candles equal to a hand GROUP BY and to a full refresh, the dashboard's
chart holding every candle and drawing as many as the minimal page, its live refresh merging the
lake's new trades and a trade written to the lake reaching the open chart, every trade of a long
history and of a 400-symbol stream loaded once, every trade the sandbox streamed received once with
its other streams beside it). No timing is
asserted: at this size the figures mean nothing, and performance is ``make bench``'s business.
What this catches is a benchmark that no longer runs.
"""

from __future__ import annotations

import pytest

from tests.support.bench import SmokeRun, printed_figures, run_smoke, written_figures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

# Several minutes on a busy 2-core machine would still be healthy; a quiet one takes a minute or two,
# most of it the transform's seven dbt runs (each a few seconds, however tiny the data) and the dashboard's
# two Streamlit servers (each page's cold load after its server starts).
SMOKE_DEADLINE_SECONDS = 900

FIGURES = {
    "stream": [
        "sender, to the bare client",
        "sender, to the pipeline client",
        "bare websockets receive loop",
        "pipeline (into the lake)",
        "pipeline / bare",
        "bare loop, per CPU-second",
        "pipeline, per CPU-second",
        "pipeline peak RSS",
        "p99 flush latency",
    ],
    "backfill": [
        "trades imported",
        "wall-clock rate",
        "sustained, per full minute",
        "rate-limit ceiling",
        "throughput / ceiling",
        "requests",
    ],
    "load": [
        "load throughput",
        "10 new files, 10 in the ledger",
        "10 new files, 50 in the ledger",
        "cost ratio, large / small ledger",
    ],
    "transform": [
        "hand GROUP BY, 1m candles",
        "hand SQL, the six marts",
        "full build of the candle marts",
        "candle marts / hand SQL",
        "candle marts / hand GROUP BY",
        "full build (dbt build)",
        "full build, models",
        "full build, tests",
        "full build / hand GROUP BY",
        "incremental, small history",
        "incremental, large history",
        "incremental, large / small",
        "incremental models, large / small",
        "freshness, CLI transform wall time",
        "freshness, process start and exit",
        "freshness, models",
        "freshness, tests",
        "freshness, models only (no tests)",
        "full refresh (dbt build)",
    ],
    "history": [
        f"{market}{figure}"
        for market in ("", "quiet, ")  # a few busy symbols, many quiet ones
        for figure in (
            *(f"ledger rows, {which} history" for which in ("short", "long")),
            *(f"full build, {which} history" for which in ("short", "long")),
            *(
                f"{figure}, {which}"
                for figure in (
                    "load of a micro-batch",
                    "ledger look-up",
                    "incremental build",
                    "incremental models",
                    "incremental tests",
                    "candles_1m",
                    "every other node",
                    "load and build",
                )
                for which in ("short history", "long history", "long / short")
            ),
            "files listed by a load",
        )
    ],
    "symbols": [
        f"{count} symbols, {figure}"
        for count in (2, 40, 400)
        for figure in (
            "trade files",
            "heartbeats",
            "write markers",
            "gap records",
            "gap markers",
            "quarantine",
            "objects per hour",
            "PUTs per second",
            "trades per second",
            "trades per trade file",
            "trade files per flush",
            "objects per flush",
            "load of the window",
            "load / window",
        )
    ],
    "dashboard": [
        "query and figure, server",
        "figure JSON (st.plotly_chart's)",
        "first chart, dashboard, cold",
        "first chart, minimal page, cold",
        "first chart, dashboard / minimal, cold",
        "first chart, dashboard, warm",
        "first chart, minimal page, warm",
        "first chart, dashboard / minimal, warm",
        "live refresh, default view",
        "live refresh, 300 candles",
        "lake to chart, p50",
        "lake to chart, p95",
    ],
    "compaction": [
        "trade files per symbol-day, before",
        "trade files per symbol-day, after",
        "compaction time per symbol-hour",
    ],
    "sandbox": [
        "offered",
        "trades alone",
        "trades with the other streams",
        "delivered, with / alone",
        "sandbox limit, alone",
        "sandbox limit, with the other streams",
        "sandbox limit, with / alone",
        "sandbox limit, per-round ratio spread",
        "other streams",
        "sandbox CPU, trades alone",
        "sandbox CPU, with the other streams",
    ],
}
CHECKS = {
    "stream": ["every trade sent was written", "all ids stored exactly once"],
    "backfill": ["no 429 and no 418", "all ids stored exactly once"],
    "load": ["every file loaded exactly once", "every trade loaded exactly once"],
    "transform": [
        "1m candles equal the hand GROUP BY",
        "the six marts equal the hand script's",
        "every trade counted once in 1m candles",
        "incremental marts equal a full refresh",
    ],
    "history": [
        f"{market}{check}, {which} history"
        for market in ("", "quiet, ")
        for which in ("short", "long")
        for check in (
            "every trade loaded exactly once",
            "every file in the ledger exactly once",
            "every trade counted once in 1m candles",
        )
    ],
    "symbols": [
        "every trade written was loaded once",
        "no id missing in any symbol's run",
        "every trade file counted is in the lake",
    ],
    "dashboard": [
        "the figure holds every candle queried",
        "both pages drew the same candles",
        "the refresh merged every trade above the frontier",
        "every trade written reached the chart",
    ],
    "compaction": ["one file per hour after", "every id once", "rows unchanged"],
    "sandbox": [
        "kept up with the offered rate, alone",
        "every trade once, alone",
        "every trade once, with the other streams",
        "every other stream delivered",
    ],
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    # live_edge runs the whole `make up` stack: its smoke is tests/bench/test_live_edge_smoke.py, which
    # make test hands to the other worker, so the two run side by side.
    return run_smoke(list(FIGURES), SMOKE_DEADLINE_SECONDS, tmp_path_factory.mktemp("bench") / "results.md")


def test_the_smoke_run_passes(smoke: SmokeRun) -> None:
    assert "Traceback" not in smoke.stderr, smoke.stderr
    assert smoke.returncode == 0, f"{smoke.stdout}\n{smoke.stderr}"
    assert set(smoke.sections) == set(FIGURES), smoke.stdout


@pytest.mark.parametrize("name", FIGURES)
def test_each_benchmark_prints_every_figure_as_a_number(smoke: SmokeRun, name: str) -> None:
    section = smoke.sections.get(name)
    assert section is not None, f"no '{name}' section in:\n{smoke.stdout}\n{smoke.stderr}"
    missing = [label for label in FIGURES[name] if label not in section.figures]
    assert not missing, f"{name}: figures missing or not numbers: {missing}\n{smoke.stdout}\n{smoke.stderr}"


@pytest.mark.parametrize("name", CHECKS)
def test_each_benchmark_passes_its_checks(smoke: SmokeRun, name: str) -> None:
    section = smoke.sections.get(name)
    assert section is not None, f"no '{name}' section in:\n{smoke.stdout}\n{smoke.stderr}"
    assert {label: section.checks.get(label) for label in CHECKS[name]} == dict.fromkeys(CHECKS[name], "ok"), (
        smoke.stdout
    )
    assert all(status == "ok" for status in section.checks.values()), smoke.stdout


def test_the_results_file_holds_every_figure_printed(smoke: SmokeRun) -> None:
    expected = {(name, label) for name, labels in FIGURES.items() for label in labels}
    printed = {key: value for key, value in printed_figures(smoke).items() if key in expected}
    assert set(printed) == expected, smoke.stdout
    written = written_figures(smoke)
    assert {key: written.get(key) for key in expected} == printed
