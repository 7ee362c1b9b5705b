"""Dashboard: the server's query and figure for 10,000 candles, and the first chart in headless Chromium.

A published snapshot (``tests/support/dashboard.snapshot_with_candles``: the snapshot file the
pipeline publishes, holding 10,000 1m candles of BTCUSDT, the last one forming, their coarser
intervals and the health tables) is what both parts read.

1. Server: ``MarketQueries.duckdb_snapshot(path).candles(symbol, "1m", limit=10_000)`` and
   ``candle_figure(...)`` of them, in this process, timed together (median of several runs; the
   first, untimed, imports and warms). Target (issue 12): at most 300 ms. The figure's JSON (what
   ``st.plotly_chart`` sends) is timed too and printed, without a target.
2. Browser: Debian's Chromium (Playwright, headless) loads the dashboard (``python -m include.cli
   dashboard``) and a minimal Streamlit page with one Plotly candlestick chart of the same candles
   (``bench/dashboard_minimal_page.py``), each served by its own Streamlit server over the same
   snapshot. Measured in the page: ``performance.now()`` (ms since the navigation started) at the
   first animation frame after candle bodies appear in the DOM (``tests/support/browser.py``).
   Each round starts both servers; the first load after a server started is *cold*, the loads after it
   *warm*; the two pages alternate (and which goes first alternates by round), every load in a fresh
   browser context (no cache: a new visitor). Medians of each; target: the dashboard at most 1.5x the
   minimal page, cold and warm.

Checks: the figure holds every candle queried, and the dashboard and the minimal page drew the same
number of candles (the minimal page is given the dashboard's default symbol, interval and count).
``--smoke`` runs it at a tiny size (targets reported, not enforced; the checks are).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import REPO_ROOT
from bench.report import Report, Target
from tests.support.browser import (
    StreamlitServer,
    candles_painted_at,
    chromium,
    dashboard_argv,
    new_page,
    streamlit_run_argv,
    streamlit_server,
    wait_for_steady_candles,
)
from tests.support.net import free_port

TARGET_SERVER_MS = 300.0
TARGET_PAINT_RATIO = 1.5
MINIMAL_PAGE = REPO_ROOT / "bench" / "dashboard_minimal_page.py"
PAINT_TIMEOUT_SECONDS = 180
SYMBOL = "BTCUSDT"


@dataclass(frozen=True)
class Size:
    candles: int  # 1m candles in the snapshot (and queried by the server part)
    server_rounds: int
    browser_rounds: int  # rounds of (start both servers, one cold load each, warm loads, stop)
    warm_loads: int  # warm loads of each page per round


FULL = Size(candles=10_000, server_rounds=7, browser_rounds=3, warm_loads=3)
SMOKE = Size(candles=300, server_rounds=1, browser_rounds=1, warm_loads=1)


@dataclass(frozen=True)
class PageUnderTest:
    name: str
    argv: Callable[[int], list[str]]  # the server's command line, given its port
    query: str = ""  # appended to the server's URL


@dataclass
class Loads:
    """Milliseconds from navigation to the first painted candles, per kind of load, and candles drawn."""

    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    drawn: set[int] = field(default_factory=set)


@dataclass
class Measured:
    server_ms: float = 0.0
    json_ms: float = 0.0
    loads: dict[str, Loads] = field(default_factory=dict)
    default_view: str = ""
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)


def server_side(snapshot: Path, symbol: str, size: Size, measured: Measured) -> None:
    """Median ms of query + figure for ``size.candles`` 1m candles, and of the figure's JSON after it."""
    from dashboard.chart import candle_figure
    from dashboard.queries import MarketQueries
    from dashboard.view import View

    queries = MarketQueries.duckdb_snapshot(snapshot)
    view = View(symbol=symbol, interval="1m")  # the default colours and theme
    built, serialised, points = [], [], 0
    for attempt in range(size.server_rounds + 1):  # the first warms (imports, DuckDB's first open)
        began = time.perf_counter()
        candles = queries.candles(symbol, "1m", limit=size.candles)
        figure = candle_figure(candles, view, candles["close"][-1].as_py())
        made = time.perf_counter()
        figure.to_json()
        if attempt:
            built.append((made - began) * 1000)
            serialised.append((time.perf_counter() - made) * 1000)
        points = sum(len(trace.x) for trace in figure.data if trace.type == "candlestick")
    measured.server_ms, measured.json_ms = statistics.median(built), statistics.median(serialised)
    measured.checks["the figure holds every candle queried"] = (
        points == size.candles,
        f"{points:,} candlestick points for {size.candles:,} candles",
    )


def first_paint(browser: Any, url: str) -> tuple[float, int]:
    """One load in a fresh context: ms to the first painted candles, and how many candles the final chart has."""
    page = new_page(browser)
    try:
        page.goto(url, wait_until="commit", timeout=PAINT_TIMEOUT_SECONDS * 1000)
        painted = candles_painted_at(page, PAINT_TIMEOUT_SECONDS)
        return painted, wait_for_steady_candles(page, PAINT_TIMEOUT_SECONDS)
    finally:
        page.context.close()


@contextmanager
def served(page: PageUnderTest, work: Path, env: dict[str, str]) -> Iterator[StreamlitServer]:
    port = free_port()
    log = work / f"{page.name.replace(' ', '-')}-{port}.log"
    with streamlit_server(page.argv(port), port, log, env=env, cwd=REPO_ROOT) as server:
        yield server


def default_view(snapshot: Path, symbol: str) -> tuple[str, int]:
    """The dashboard's default view (no query string): the query of its symbol and interval, and how many
    candles it shows (the check below holds the dashboard to it)."""
    from dashboard.queries import MarketQueries
    from dashboard.view import parse_view

    view, _ = parse_view({}, [symbol], symbol)
    candles = MarketQueries.duckdb_snapshot(snapshot).candles(view.symbol, view.interval, limit=view.candle_limit)
    return urlencode({"symbol": view.symbol, "interval": view.interval}), candles.num_rows


def browser_round(pages: list[PageUnderTest], work: Path, env: dict[str, str], size: Size, measured: Measured) -> None:
    """Both servers started, then a browser (its renderers must not outlive them); each page's first load
    (cold), then ``size.warm_loads`` loads each, alternating."""
    with ExitStack() as stack:
        servers = {page.name: stack.enter_context(served(page, work, env)) for page in pages}
        browser = stack.enter_context(chromium())
        warm_up(browser)
        for kind, loads in (("cold", 1), ("warm", size.warm_loads)):
            for _ in range(loads):
                for page in pages:
                    painted, drawn = first_paint(browser, servers[page.name].url + page.query)
                    getattr(measured.loads[page.name], kind).append(painted)
                    measured.loads[page.name].drawn.add(drawn)


def warm_up(browser: Any) -> None:
    """A blank page first, so that neither page under test pays for the browser's own first renderer."""
    page = new_page(browser)
    page.goto("about:blank")
    page.context.close()


def browser_side(work: Path, env: dict[str, str], size: Size, measured: Measured) -> None:
    query, drawn = default_view(Path(env["DASHBOARD_SNAPSHOT"]), env["SYMBOLS"])
    measured.default_view = f"{query}, {drawn:,} candles"
    pages = [
        PageUnderTest("dashboard", dashboard_argv),
        PageUnderTest("minimal page", lambda port: streamlit_run_argv(MINIMAL_PAGE, port), f"/?{query}&limit={drawn}"),
    ]
    measured.loads = {page.name: Loads() for page in pages}
    for round_number in range(size.browser_rounds):
        browser_round(pages if round_number % 2 == 0 else pages[::-1], work, env, size, measured)
    app, minimal = measured.loads["dashboard"], measured.loads["minimal page"]
    measured.checks["both pages drew the same candles"] = (
        app.drawn == minimal.drawn == {drawn},
        f"dashboard {sorted(app.drawn)}, minimal page {sorted(minimal.drawn)}, default view {drawn}",
    )


def measure(work: Path, size: Size) -> Measured:
    from tests.support.dashboard import snapshot_with_candles

    snapshot = work / "dashboard" / "marts.duckdb"
    symbol = snapshot_with_candles(snapshot, symbols=(SYMBOL,), minutes=size.candles).symbols[0]
    env = {"WAREHOUSE": "duckdb", "DATA_DIR": str(work), "DASHBOARD_SNAPSHOT": str(snapshot), "SYMBOLS": SYMBOL}
    measured = Measured()
    server_side(snapshot, symbol, size, measured)
    browser_side(work, env, size, measured)
    return measured


def report_browser(report: Report, measured: Measured) -> None:
    app, minimal = measured.loads["dashboard"], measured.loads["minimal page"]
    target = Target("<=", TARGET_PAINT_RATIO)
    for kind in ("cold", "warm"):
        ours, base = statistics.median(getattr(app, kind)), statistics.median(getattr(minimal, kind))
        runs = f"median of {len(getattr(app, kind))}"
        report.figure(f"first chart, dashboard, {kind}", ours, "ms", note=runs)
        report.figure(f"first chart, minimal page, {kind}", base, "ms", note=runs)
        report.figure(f"first chart, dashboard / minimal, {kind}", ours / base, digits=2, target=target)


def main(smoke: bool = False) -> bool:
    size = SMOKE if smoke else FULL
    report = Report(
        f"dashboard: query and figure of {size.candles:,} candles; first chart in headless Chromium vs a minimal page"
    )
    with tempfile.TemporaryDirectory() as work_dir:
        measured = measure(Path(work_dir), size)
    print(f"the dashboard's default view: {measured.default_view}", flush=True)
    target = Target("<=", TARGET_SERVER_MS)
    runs = f"median of {size.server_rounds}"
    report.figure("query and figure, server", measured.server_ms, "ms", digits=1, target=target, note=runs)
    report.figure("figure JSON (st.plotly_chart's)", measured.json_ms, "ms", digits=1, note=runs)
    report_browser(report, measured)
    for label, (ok, detail) in measured.checks.items():
        report.check(label, ok, detail)
    return report.passed(enforce_targets=not smoke)
