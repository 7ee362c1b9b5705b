"""The dashboard in a real browser: headless Chromium (Debian's, driven by Playwright) against
``python -m include.cli dashboard`` (``streamlit run dashboard/app.py``) over a snapshot published
from a real warehouse.

The warehouse is built the way the pipeline builds it: trades written to a lake (a random walk, one
trade every 20 s for a week, ending in the current minute, so the last candle is forming), loaded,
transformed by dbt, with the stream's heartbeats and a completeness window, then published with
``publish_snapshot``. Expected candle counts are read from that snapshot file directly.

Screenshots go to the folder in ``CRYPTOFLOW_SCREENSHOTS`` (default: the test's tmp folder);
``CRYPTOFLOW_SCREENSHOTS=docs/images`` refreshes the README's ``dashboard-desktop.png`` and
``dashboard-mobile.png``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import duckdb
import numpy as np
import pytest

from dashboard.view import AUTO_CANDLES
from include.config import load_settings
from include.lake.store import LocalStore
from include.lake.trades import TradeColumns, write_trades
from include.timeutil import to_us
from include.warehouse.snapshot import publish_snapshot
from tests.support.browser import (
    DESKTOP,
    MOBILE,
    StreamlitServer,
    candle_fills,
    dashboard_argv,
    horizontal_overflow,
    new_page,
    running,
    streamlit_server,
    wait_for_candle_count,
    wait_for_candle_fill,
    wait_for_candles,
    wait_for_steady_candles,
)
from tests.support.candles import build, load
from tests.support.net import free_port
from tests.support.paths import REPO_ROOT
from tests.support.waiting import wait_until
from tests.support.warehouse import write_heartbeats, write_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SYMBOLS = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}  # the walk's starting prices
SCALE = 10_000  # candles the chart must draw at once (issue 12)
MINUTES = SCALE + 200  # 1m candles per symbol
TRADE_SECONDS = 20
INTERVALS = ("1m", "5m", "15m", "1h", "4h", "1d")
WAIT_MS = 60_000
NEW_BULL = "ffaa00"  # a colour no default uses
HOSTILE = {
    "sql fragment": {"symbol": "BTCUSDT' OR 1=1; DROP TABLE candles_1m; --"},
    "unknown symbol": {"symbol": "DOGEUSDT"},
    "unknown interval": {"interval": "7m"},
    "10,000 characters": {"range": "x" * 10_000},
    "markup as a colour": {"bull": "<img src=x onerror=alert(1)>"},
}


@dataclass(frozen=True)
class Market:
    snapshot: Path
    candles: dict[tuple[str, str], int]  # (symbol, interval) -> candles in the snapshot
    lake_url: str  # the lake the marts were built from, which the speed layer reads


def _trades(symbol: str, first_id: int, start: datetime, count: int) -> TradeColumns:
    """A random walk from SYMBOLS[symbol], cents for prices, one trade every TRADE_SECONDS from ``start``."""
    rng = np.random.default_rng(first_id)
    walk = SYMBOLS[symbol] * np.exp(np.cumsum(rng.normal(0, 0.0006, count)))
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    return TradeColumns(
        symbol,
        ids,
        np.round(walk * 100).astype(np.int64) * 1_000_000,  # 1e-8 units, two decimals
        1 + rng.integers(0, 20_000_000, count),
        to_us(start) + np.arange(count, dtype=np.int64) * TRADE_SECONDS * 1_000_000,
        rng.random(count) < 0.5,
    )


def _priced_among_newest(snapshot: Path, symbol: str, interval: str, newest: int) -> int:
    """Candles with prices among the ``newest`` of the snapshot: the bodies the chart must draw. A bucket
    without prices is a shaded band, not a body: the fixture's heartbeat carries the wall clock, and
    when it lands past the last trade's minute the marts hold one open, priceless bucket at the end."""
    sql = f"""select count(close) from (
        select close from candles_{interval} where symbol = ? order by open_time desc limit ?)"""
    with duckdb.connect(str(snapshot), read_only=True) as connection:
        row = connection.execute(sql, [symbol, newest]).fetchone()
    assert row is not None
    return int(row[0])


def _snapshot_counts(snapshot: Path) -> dict[tuple[str, str], int]:
    counts = {}
    with duckdb.connect(str(snapshot), read_only=True) as connection:
        for interval in INTERVALS:
            rows = connection.execute(f"select symbol, count(*) from candles_{interval} group by symbol").fetchall()
            counts.update({(symbol, interval): count for symbol, count in rows})
    return counts


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Market:
    """A week of trades per symbol through the lake, the load, dbt and the publish."""
    work = tmp_path_factory.mktemp("market")
    lake = LocalStore(work / "lake")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=MINUTES - 1)
    count = MINUTES * 60 // TRADE_SECONDS
    last = {}
    for n, symbol in enumerate(SYMBOLS):
        trades = _trades(symbol, 1 + n * 1_000_000, start, count)
        write_trades(lake, trades, "stream", to_us(now))
        last[symbol] = (int(trades.trade_id[-1]), int(trades.trade_time_us[-1]))
    write_heartbeats(lake, last, {"connection": 0, "connects": 1, "restarts": 0, "state": "connected", "streams": 2})
    write_window(lake, "BTCUSDT", now.replace(minute=0) - timedelta(hours=2), filled=3)
    warehouse = work / "warehouse.duckdb"
    load(lake, warehouse)
    build(warehouse, work / "target")
    settings = load_settings({"DUCKDB_PATH": str(warehouse), "WAREHOUSE": "duckdb", "DATA_DIR": str(work)})
    snapshot = publish_snapshot(settings).path
    assert snapshot is not None
    return Market(snapshot, _snapshot_counts(snapshot), lake.url)


@pytest.fixture(scope="module")
def server(market: Market, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamlitServer]:
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {
        "WAREHOUSE": "duckdb",
        "DASHBOARD_SNAPSHOT": str(market.snapshot),
        "SYMBOLS": ",".join(SYMBOLS),
        "LAKE_URL": market.lake_url,  # all loaded: the speed layer finds nothing above the marts
    }
    with streamlit_server(dashboard_argv(port), port, log, env=env, cwd=REPO_ROOT) as started:
        yield started


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """``open_page(url, viewport)``: a page in a fresh context, loaded; every one closed after the test."""
    contexts = []

    def opened(url: str, viewport: dict[str, int] = DESKTOP) -> Any:
        page = new_page(browser, viewport)
        contexts.append(page.context)
        page.goto(url, timeout=WAIT_MS)
        return page

    yield opened
    for context in contexts:
        context.close()


def _url(server: StreamlitServer, **params: str) -> str:
    return f"{server.url}/?{urlencode(params)}" if params else server.url


def _wait_for_health(page: Any) -> None:
    """The page is complete: the health panel (drawn after the chart) is there and no script runs."""
    page.get_by_text("Pipeline health").wait_for(timeout=WAIT_MS)
    wait_for_steady_candles(page, WAIT_MS / 1000)


def _still_screenshot(page: Any, path: Path) -> bool:
    """A screenshot of the whole page at rest: taken with no run under way before or after it (a live
    refresh every few seconds re-runs the chart's fragment, and Streamlit greys what it re-runs)."""
    _wait_for_health(page)
    page.screenshot(path=str(path))
    return not running(page)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def _screenshots() -> Path | None:
    folder = os.environ.get("CRYPTOFLOW_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder)
    return path if path.is_absolute() else REPO_ROOT / path


def _view(page: Any) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(page.url).query).items()}


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("mobile", MOBILE)])
def test_screenshot(
    server: StreamlitServer, market: Market, open_page: Any, tmp_path: Path, name: str, viewport: dict[str, int]
) -> None:
    page = open_page(_url(server, symbol="BTCUSDT", interval="15m"), viewport)
    expected = _priced_among_newest(market.snapshot, "BTCUSDT", "15m", AUTO_CANDLES)
    assert expected >= AUTO_CANDLES - 1
    assert wait_for_candle_count(page, expected) == expected
    path = (_screenshots() or tmp_path) / f"dashboard-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    wait_until(lambda: _still_screenshot(page, path), WAIT_MS / 1000, "a screenshot between two live refreshes")
    assert _png_size(path) == (viewport["width"], viewport["height"])


def test_at_390_px_nothing_scrolls_sideways(server: StreamlitServer, open_page: Any) -> None:
    page = open_page(server.url, MOBILE)
    _wait_for_health(page)
    assert horizontal_overflow(page) == 0
    chart = page.locator(".js-plotly-plot").first.bounding_box()
    assert chart is not None
    assert 0 <= chart["x"] < chart["x"] + chart["width"] <= MOBILE["width"], chart


@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize("symbol", list(SYMBOLS)[:1])
def test_candles_are_drawn_for_each_interval(
    server: StreamlitServer, market: Market, open_page: Any, symbol: str, interval: str
) -> None:
    expected = _priced_among_newest(market.snapshot, symbol, interval, AUTO_CANDLES)
    assert expected >= min(AUTO_CANDLES, market.candles[symbol, interval]) - 1  # at most the newest is priceless
    page = open_page(_url(server, symbol=symbol, interval=interval))
    assert wait_for_candle_count(page, expected) == expected
    assert (_view(page)["symbol"], _view(page)["interval"]) == (symbol, interval)


def test_ten_thousand_candles_render(server: StreamlitServer, market: Market, open_page: Any) -> None:
    assert market.candles["BTCUSDT", "1m"] > SCALE
    page = open_page(_url(server, symbol="BTCUSDT", interval="1m", range="max"))
    expected = _priced_among_newest(market.snapshot, "BTCUSDT", "1m", SCALE)
    assert expected >= SCALE - 1
    assert wait_for_candle_count(page, expected) == expected


def _rgb(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({red}, {green}, {blue})"


def test_a_colour_change_goes_to_the_url_and_a_reload_restores_it(server: StreamlitServer, open_page: Any) -> None:
    page = open_page(_url(server, symbol="BTCUSDT", interval="5m"))
    wait_for_steady_candles(page, WAIT_MS / 1000)
    assert _rgb(NEW_BULL) not in candle_fills(page)
    page.get_by_role("button", name="Bull fill color picker").click()
    hex_input = page.get_by_role("dialog").locator("input").first
    hex_input.fill(NEW_BULL)
    hex_input.press("Enter")
    page.keyboard.press("Escape")  # Streamlit takes the picked colour when the picker closes
    page.wait_for_function("colour => location.search.includes('bull=' + colour)", arg=NEW_BULL, timeout=WAIT_MS)
    wait_for_candle_fill(page, _rgb(NEW_BULL), WAIT_MS / 1000)
    shared = page.url
    assert _view(page)["bull"] == NEW_BULL

    reloaded = open_page(shared)  # a new visitor with the link: no state but the URL
    wait_for_steady_candles(reloaded, WAIT_MS / 1000)
    assert _rgb(NEW_BULL) in candle_fills(reloaded)
    assert _view(reloaded) == _view(page)
    figure = reloaded.evaluate("() => document.querySelector('.js-plotly-plot').data[0].increasing.fillcolor")
    assert figure == f"#{NEW_BULL}"


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_query_is_refused_and_the_page_renders(
    server: StreamlitServer, market: Market, open_page: Any, hostile: dict[str, str]
) -> None:
    page = open_page(_url(server, **{"symbol": "BTCUSDT", "interval": "5m", **hostile}))
    (key, value), *_ = hostile.items()
    notice = page.get_by_test_id("stAlert").filter(has_text="Ignored").filter(has_text=key)
    notice.first.wait_for(timeout=WAIT_MS)
    assert wait_for_candles(page, WAIT_MS / 1000) > 0
    assert _view(page).get(key) != value  # the URL shows what is on screen, not the refused value
    assert _snapshot_counts(market.snapshot) == market.candles  # nothing was dropped or changed
