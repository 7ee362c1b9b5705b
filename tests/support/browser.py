"""A Streamlit server and Debian's Chromium, driven by Playwright: the dashboard's browser tests and benchmark.

Every process started here is ended, whole tree, even when the caller fails: the server runs under
``process_group``; Playwright's driver (node) and the Chromium it launches inherit a tag in their
environment, and every process carrying it is killed on the way out (``end_tagged``).

Start the browser *after* the servers it visits and close it before they end: ``process_group`` ends
every process that appeared below this one while its server ran, and Chromium starts renderers as it
goes (one per browser context), which would die with a server that ended first.

Candles are "drawn" when Plotly has put candlestick bodies in the DOM: ``g.trace.boxes path`` inside
the page's ``.js-plotly-plot`` (one path per candle, the increasing and decreasing traces together).
``CANDLE_PAINT_SCRIPT`` records, in the page, when that first happened: ``performance.now()`` (ms since
the navigation started) at the first animation frame after a MutationObserver saw candle paths, so a
measurement does not include Python's polling.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.dashboard_server import streamlit_argv
from tests.support.processes import TAG, end_tagged, process_group
from tests.support.waiting import wait_until

LOOPBACK = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"  # Debian's package: no browser is downloaded
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
SERVER_START_SECONDS = 120  # a cold Streamlit import on a busy 2-core machine takes tens of seconds
# The main plot only: a range slider, when shown, draws a second copy of every candle.
EXCEPTION = '[data-testid="stException"]'  # a traceback Streamlit shows in the page
STATUS_WIDGET = '[data-testid="stStatusWidget"]'
CANDLES_SELECTOR = ".js-plotly-plot .cartesianlayer g.trace.boxes path"

# Installed before any of the page's scripts run: the time candles were first painted, in the page.
CANDLE_PAINT_SCRIPT = """
(() => {
  const selector = SELECTOR;
  const seen = () => document.querySelectorAll(selector).length > 0;
  const mark = () => requestAnimationFrame(() => { window.__candlesPaintedAt = performance.now(); });
  const watch = () => {
    if (seen()) { mark(); return; }
    const observer = new MutationObserver(() => {
      if (seen()) { observer.disconnect(); mark(); }
    });
    observer.observe(document, {childList: true, subtree: true});
  };
  watch();
})();
""".replace("SELECTOR", json.dumps(CANDLES_SELECTOR))


@dataclass(frozen=True)
class StreamlitServer:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log: Path  # the server's stdout and stderr

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def streamlit_run_argv(script: Path, port: int) -> list[str]:
    """``streamlit run SCRIPT`` on 127.0.0.1:PORT as the dashboard's command runs it (headless, nothing sent)."""
    return streamlit_argv(LOOPBACK, port, script)


def dashboard_argv(port: int) -> list[str]:
    """The dashboard as users start it: ``python -m include.cli dashboard`` (``streamlit run dashboard/app.py``)."""
    return [sys.executable, "-m", "include.cli", "dashboard", "--host", LOOPBACK, "--port", str(port)]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def streamlit_server(
    argv: Sequence[str], port: int, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[StreamlitServer]:
    """Runs ``argv`` (a Streamlit server on ``port``) until the block ends; yields once /_stcore/health answers."""
    with (
        log.open("wb") as out,
        process_group(list(argv), env={**os.environ, **(env or {})}, cwd=cwd, stdout=out, stderr=out) as process,
    ):
        server = StreamlitServer(f"http://127.0.0.1:{port}", process, log)

        def up() -> bool:
            assert process.poll() is None, f"the server exited ({process.returncode}):\n{server.output()}"
            return healthy(server.url)

        wait_until(up, SERVER_START_SECONDS, f"{' '.join(argv)} to answer /_stcore/health", interval=0.2)
        yield server


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless ``playwright.sync_api.Browser`` on Debian's Chromium; the driver and browser all ended after."""
    from playwright.sync_api import sync_playwright

    tag = uuid.uuid4().hex
    before = os.environ.get(TAG)
    os.environ[TAG] = tag  # inherited by Playwright's driver, and by the Chromium it launches
    try:
        manager = sync_playwright()
        playwright = manager.start()
    finally:
        if before is None:
            os.environ.pop(TAG, None)
        else:
            os.environ[TAG] = before
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True)
        try:
            yield browser
        finally:
            with contextlib.suppress(Exception):
                browser.close()
    finally:
        with contextlib.suppress(Exception):
            manager.__exit__(None, None, None)
        end_tagged(tag)


def new_page(browser: Any, viewport: dict[str, int] = DESKTOP) -> Any:
    """A page in a fresh context (no cache, no storage shared with other pages) that records candle paint."""
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    context.set_default_timeout(60_000)  # a busy machine: generous, and every wait names what it waits for
    context.add_init_script(CANDLE_PAINT_SCRIPT)
    return context.new_page()


def candle_count(page: Any) -> int:
    return page.locator(CANDLES_SELECTOR).count()


def wait_for_candles(page: Any, timeout_seconds: float = 60, at_least: int = 1) -> int:
    """Waits (in the page) until at least ``at_least`` candle bodies are drawn; returns how many are."""
    page.wait_for_function(
        "([selector, n]) => document.querySelectorAll(selector).length >= n",
        arg=[CANDLES_SELECTOR, at_least],
        timeout=timeout_seconds * 1000,
    )
    return candle_count(page)


def running(page: Any) -> bool:
    """Whether Streamlit shows a run under way (its status widget: "Running...", "Stop")."""
    return page.locator(STATUS_WIDGET).count() > 0


def wait_for_steady_candles(page: Any, timeout_seconds: float = 60) -> int:
    """Waits until candles are drawn and Streamlit has finished its run (no script running): the final chart."""
    wait_for_candles(page, timeout_seconds)
    page.wait_for_function(
        "selector => !document.querySelector(selector)", arg=STATUS_WIDGET, timeout=timeout_seconds * 1000
    )
    return candle_count(page)


def candles_painted_at(page: Any, timeout_seconds: float = 120) -> float:
    """Milliseconds from the navigation's start to the first painted frame with candles (``new_page`` pages);
    an error shown by Streamlit in their place fails at once, with its text."""
    handle = page.wait_for_function(
        "selector => window.__candlesPaintedAt || (document.querySelector(selector) ? 'error' : null)",
        arg=EXCEPTION,
        timeout=timeout_seconds * 1000,
    )
    painted = handle.json_value()
    assert isinstance(painted, int | float), f"{page.url} shows an error: {page.locator(EXCEPTION).first.inner_text()}"
    return float(painted)


def horizontal_overflow(page: Any) -> int:
    """Pixels the document is wider than the viewport (0 when nothing scrolls sideways)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def wait_for_candle_count(page: Any, candles: int, timeout_seconds: float = 60) -> int:
    """Waits until exactly ``candles`` candle bodies are drawn; returns how many are drawn, either way."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            "([selector, n]) => document.querySelectorAll(selector).length === n",
            arg=[CANDLES_SELECTOR, candles],
            timeout=timeout_seconds * 1000,
        )
    return candle_count(page)


def candle_fills(page: Any) -> set[str]:
    """The fill colours of the candle bodies drawn, as the browser computed them (``rgb(r, g, b)``)."""
    fills = page.evaluate(
        "selector => Array.from(document.querySelectorAll(selector)).map(path => getComputedStyle(path).fill)",
        CANDLES_SELECTOR,
    )
    return set(fills)


def wait_for_candle_fill(page: Any, fill: str, timeout_seconds: float = 60) -> None:
    """Waits until some candle body is drawn in ``fill`` (``rgb(r, g, b)``)."""
    page.wait_for_function(
        "([selector, fill]) => Array.from(document.querySelectorAll(selector))"
        ".some(path => getComputedStyle(path).fill === fill)",
        arg=[CANDLES_SELECTOR, fill],
        timeout=timeout_seconds * 1000,
    )
