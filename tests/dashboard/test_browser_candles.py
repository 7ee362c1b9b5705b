"""How candles, volume and what is not known are drawn, in a real browser, and the live edge arriving.

Headless Chromium (Debian's, driven by Playwright: tests/support/browser.py) against ``python -m
include.cli dashboard`` over a snapshot written directly (tests/support/dashboard.py) with the
marts' live-edge columns: 1m candles of BTCUSDT with some minutes incomplete and some without
prices. What Plotly drew is read from the page: the SVG paths of each trace (``g.trace``, bound to
its trace by Plotly's ``__data__``) and the axes' own data-to-pixel conversion (``d2p``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest

from dashboard.chart import FORMING, GAP, INCOMPLETE, UNKNOWN
from dashboard.queries import MarketQueries
from dashboard.view import THEMES
from include.lake.store import LocalStore
from include.lake.trades import write_trades
from include.timeutil import to_us
from tests.support.browser import (
    StreamlitServer,
    dashboard_argv,
    new_page,
    streamlit_server,
    wait_for_steady_candles,
)
from tests.support.dashboard import SnapshotFacts, snapshot_with_candles
from tests.support.net import free_port
from tests.support.paths import REPO_ROOT
from tests.support.trades import trade_columns

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MINUTES = 120
INCOMPLETE_MINUTES = frozenset({100, 101, 110})
GAP_MINUTES = frozenset({104, 105, 112})  # two runs: 104-105 and 112
WAIT_MS = 60_000

# Every trace Plotly drew in the chart: its name, and per path its box (x, width), fill, fill opacity, stroke.
DRAWN_SCRIPT = """
() => Array.from(document.querySelectorAll('.js-plotly-plot .cartesianlayer g.trace')).map(group => ({
  name: group.__data__[0].trace.name,
  type: group.__data__[0].trace.type,
  paths: Array.from(group.querySelectorAll('path')).map(path => {
    const box = path.getBBox(), style = getComputedStyle(path);
    return {x: box.x, width: box.width, fill: style.fill, fillOpacity: style.fillOpacity, stroke: style.stroke};
  }),
}))
"""
# Pixels one interval spans on the volume pane's time axis, by Plotly's own conversion.
INTERVAL_PX_SCRIPT = """
([start, end]) => {
  const axis = document.querySelector('.js-plotly-plot')._fullLayout.xaxis2;
  return axis.d2p(end) - axis.d2p(start);
}
"""


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> SnapshotFacts:
    path = tmp_path_factory.mktemp("snapshot") / "marts.duckdb"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(
        minutes=MINUTES + 10
    )  # the live edge's reach
    return snapshot_with_candles(
        path, symbols=("BTCUSDT",), minutes=MINUTES, start=start, incomplete=INCOMPLETE_MINUTES, gaps=GAP_MINUTES
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    return LocalStore(tmp_path_factory.mktemp("lake"))


@pytest.fixture(scope="module")
def server(snapshot: SnapshotFacts, lake: LocalStore, tmp_path_factory) -> Iterator[StreamlitServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {
        "WAREHOUSE": "duckdb",
        "DASHBOARD_SNAPSHOT": str(snapshot.path),
        "SYMBOLS": "BTCUSDT",
        "LAKE_URL": lake.url,
    }
    with streamlit_server(dashboard_argv(port), port, log, env=env, cwd=REPO_ROOT) as started:
        yield started


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    pages = []

    def opened(server: StreamlitServer, **params: str) -> Any:
        page = new_page(browser)
        pages.append(page)
        page.goto(f"{server.url}/?{urlencode({'symbol': 'BTCUSDT', **params})}", timeout=WAIT_MS)
        wait_for_steady_candles(page, WAIT_MS / 1000)
        return page

    yield opened
    for page in pages:
        page.context.close()


def drawn(page: Any) -> dict[str, dict[str, Any]]:
    return {trace["name"]: trace for trace in page.evaluate(DRAWN_SCRIPT)}


def _rgb(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def test_an_incomplete_candle_is_drawn_apart_from_a_complete_one(server, open_page):
    traces = drawn(open_page(server, interval="1m", range="1h"))
    complete, incomplete = traces["BTCUSDT 1m"]["paths"], traces[INCOMPLETE]["paths"]
    assert len(incomplete) == len(INCOMPLETE_MINUTES)
    # Complete candles are filled in the view's colours; incomplete ones hollow, outlined in grey.
    assert {path["fillOpacity"] for path in complete} == {"1"}
    assert {path["fill"] for path in complete} == {_rgb("#26a69a"), _rgb("#ef5350")}
    assert {(path["fillOpacity"], path["stroke"]) for path in incomplete} == {("0", _rgb(UNKNOWN))}
    assert not {path["stroke"] for path in complete} & {_rgb(UNKNOWN)}
    # The same width as the others: a candle, marked, not a sliver or a slab.
    widths = [path["width"] for path in complete + incomplete + traces[FORMING]["paths"]]
    assert max(widths) - min(widths) < 1


def test_buckets_without_prices_are_shaded_not_drawn(server, open_page):
    page = open_page(server, interval="1m", range="1h")
    traces = drawn(page)
    candles = sum(len(trace["paths"]) for trace in traces.values() if trace["type"] == "candlestick")
    assert candles == 60 - len(GAP_MINUTES)  # the last hour: every minute but those without prices
    assert len(traces[GAP]["paths"]) == len(GAP_MINUTES)  # a marker on each, named in the legend
    bands = page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot .shapelayer path'))"
        ".filter(path => getComputedStyle(path).fillOpacity !== '0' && path.getBBox().height > 100).length"
    )
    assert bands == 2  # 104-105 together, 112 alone
    assert page.get_by_text(GAP).count() == 1  # the legend's entry


def test_at_5m_each_volume_bar_is_exactly_one_interval_wide_and_none_overlap(server, snapshot, open_page):
    page = open_page(server, interval="5m")
    start = snapshot.start.strftime("%Y-%m-%d %H:%M:%S")
    end = (snapshot.start + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    interval_px = page.evaluate(INTERVAL_PX_SCRIPT, [start, end])
    assert interval_px > 4  # wide enough for a pixel to tell
    bars = sorted(
        (path["x"], path["width"])
        for name, trace in drawn(page).items()
        if trace["type"] == "bar"
        for path in trace["paths"]
    )
    assert len(bars) == MarketQueries.duckdb_snapshot(snapshot.path).candles("BTCUSDT", "5m").num_rows
    assert all(abs(width - interval_px) <= 1 for _, width in bars), (interval_px, bars[:5])
    assert all(left + width <= right + 0.5 for (left, width), (right, _) in pairwise(bars))


def test_the_page_wears_the_theme_of_its_streamlit_config(server, open_page):
    """dashboard/.streamlit/config.toml, read beside the app whatever the server's folder: the page's
    background is the chart's dark one, and the chart, drawn in it, shares it."""
    page = open_page(server, interval="5m")
    background = page.evaluate("() => getComputedStyle(document.querySelector('.stApp')).backgroundColor")
    assert background == _rgb(THEMES["dark"]["background"])
    chart = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.paper_bgcolor")
    assert chart == THEMES["dark"]["background"]


def test_one_set_of_range_controls(server, open_page):
    page = open_page(server, interval="5m")
    assert page.locator(".js-plotly-plot .rangeselector").count() == 0  # no Plotly range buttons
    assert page.locator(".js-plotly-plot .rangeslider-container").count() == 0
    assert page.get_by_text("Range", exact=True).count() == 1  # the sidebar's, alone
    for label in ("6h", "1w"):  # labels of range buttons only (the interval's are 1m..1d): once, the sidebar's
        assert page.get_by_text(label, exact=True).count() == 1, label


def test_a_trade_written_to_the_lake_reaches_the_open_chart(server, snapshot, lake, open_page):
    """The speed layer live: a trade after the snapshot's newest is on the chart after a refresh or two."""
    page = open_page(server, interval="1m", range="1h")
    frontier = MarketQueries.duckdb_snapshot(snapshot.path).edge("BTCUSDT", "1m").frontier
    assert frontier is not None
    next_id = frontier.last_trade_id + 1
    moment = snapshot.end + timedelta(seconds=5)  # in the minute after the snapshot's forming one
    write_trades(lake, trade_columns("BTCUSDT", np.array([next_id]), np.array([to_us(moment)])), "stream", 0)
    shown = moment.replace(second=0).strftime("%Y-%m-%d %H:%M:%S")
    page.wait_for_function(
        "x => document.querySelector('.js-plotly-plot').data.some(t => t.type === 'candlestick' && "
        "Array.from(t.x).includes(x))",
        arg=shown,
        timeout=WAIT_MS,
    )
    forming = page.evaluate(
        "() => document.querySelector('.js-plotly-plot').data.find(t => t.name === 'forming (not closed)').x"
    )
    assert list(forming) == [shown]


def test_the_forming_and_incomplete_candles_are_named_in_the_legend(server, open_page):
    page = open_page(server, interval="1m", range="1h")
    for name in (FORMING, INCOMPLETE):
        assert page.locator(".js-plotly-plot .legend").get_by_text(name).count() == 1


def test_a_page_opened_before_the_first_snapshot_shows_the_chart_once_it_is_published(
    browser, snapshot, lake, tmp_path
):
    """Right after `make up` there is nothing to show yet: the page says so, and draws the chart the moment
    the warehouse publishes, without a reload (it used to wait for one forever)."""
    port, target = free_port(), tmp_path / "dashboard" / "marts.duckdb"
    env = {"WAREHOUSE": "duckdb", "DASHBOARD_SNAPSHOT": str(target), "SYMBOLS": "BTCUSDT", "LAKE_URL": lake.url}
    with streamlit_server(dashboard_argv(port), port, tmp_path / "streamlit.log", env=env, cwd=REPO_ROOT) as started:
        page = new_page(browser)
        try:
            page.goto(f"{started.url}/?symbol=BTCUSDT&interval=1m&range=1h", timeout=WAIT_MS)
            page.get_by_text("No dashboard snapshot").wait_for(timeout=WAIT_MS)
            target.parent.mkdir(parents=True)
            shutil.copyfile(snapshot.path, target)  # what a publish puts there (an atomic rename in the product)
            assert wait_for_steady_candles(page, WAIT_MS / 1000) > 0
        finally:
            page.context.close()
