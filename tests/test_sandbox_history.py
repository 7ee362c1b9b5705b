"""Where the history of ``make up``'s sandbox begins (include/sandbox_history.py), and a sandbox that
``up`` restarts on the same data folder serving the first start's hour, trade for trade."""

from __future__ import annotations

import subprocess
import urllib.error
from datetime import datetime
from typing import Any

import pytest

from include.config import load_settings
from include.sandbox.server import serve_in_thread
from include.sandbox_history import (
    HistoryMarkerError,
    history_start,
    recorded_history_start,
    served_history_start,
)
from include.timeutil import HOUR_US, MINUTE_US, now_us, to_us
from include.up import services
from tests.support.exchange import rest_history, sandbox_config
from tests.support.net import MICRO, free_port, http_get
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group
from tests.support.waiting import wait_until

SOME_TIME_US = 1_790_000_000_000_000 // HOUR_US * HOUR_US  # 2026-09-21, an hour's start, a fixed "now"


def test_the_first_start_records_the_start_of_the_hour_before_and_later_starts_read_it(tmp_path):
    data = tmp_path / "data"  # not made yet, as on a fresh checkout
    first_start = SOME_TIME_US + 40 * MINUTE_US  # 40 minutes into an hour
    previous_hour = SOME_TIME_US - HOUR_US  # the start of the hour before: the first repair's window
    assert recorded_history_start(data, first_start) == previous_hour
    marker = data / "sandbox" / "history_start"
    assert to_us(datetime.fromisoformat(marker.read_text().strip())) == previous_hour
    assert recorded_history_start(data, first_start + 5 * HOUR_US) == previous_hour
    assert [path.name for path in marker.parent.iterdir()] == ["history_start"]  # no temporary left behind


@pytest.mark.parametrize("text", ["yesterday", "2026-01-01T00:00:00", ""])
def test_a_marker_that_is_not_a_time_with_a_zone_is_named(tmp_path, text):
    marker = tmp_path / "sandbox" / "history_start"
    marker.parent.mkdir()
    marker.write_text(text)
    with pytest.raises(HistoryMarkerError) as refused:
        recorded_history_start(tmp_path, SOME_TIME_US)
    assert str(marker) in str(refused.value)
    assert repr(text) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_restart_serves_from_the_first_start_back_a_day_at_most_and_an_hour_at_least():
    first = SOME_TIME_US - HOUR_US  # the history of a first start at SOME_TIME_US

    def served(hours_after_first_start: float, rate: float = 20.0) -> int:
        return served_history_start(first, SOME_TIME_US + int(hours_after_first_start * HOUR_US), rate)

    assert served(0) == first
    assert served(0.25) == first
    assert served(20) == first
    assert served(30) == SOME_TIME_US + 6 * HOUR_US  # the last day only, at the default 20 trades/s
    # A day at 100 trades/s would take minutes to make: as many trades as a day at 20, 4.8 hours.
    assert served(30, rate=100) == SOME_TIME_US + 30 * HOUR_US - 48 * HOUR_US // 10
    assert served(30, rate=2) == SOME_TIME_US + 6 * HOUR_US  # a slower market: still a day at most
    assert served(30, rate=5000) == SOME_TIME_US + 29 * HOUR_US  # never less than the hour
    # A first start in the future (the clock was set back): the last hour.
    assert served_history_start(SOME_TIME_US + HOUR_US, SOME_TIME_US, 20.0) == SOME_TIME_US - HOUR_US


# A restart of `up`'s sandbox, really started --------------------------------------------------------

RATE = 2.0  # trades per second: the first hour is 7,200 trades, a few pages of REST


def first_hour(rest_url: str, start_us: int) -> list[dict[str, Any]]:
    """Every trade of the hour from ``start_us`` (µs), as REST history serves it."""
    status, _, first = http_get(f"{rest_url}/api/v3/aggTrades?symbol=BTCUSDT&startTime={start_us}&limit=1", MICRO)
    assert status == 200, first
    assert first, f"no trade at or after {start_us}"
    return rest_history(rest_url, "BTCUSDT", first[0]["f"], MICRO, until_us=start_us + HOUR_US)


def test_a_sandbox_up_restarts_serves_the_first_starts_hour_trade_for_trade(tmp_path):
    """``up`` first started on this data folder three hours ago; the sandbox it starts now serves the
    hour of history that first start served, with the same trades under the same ids."""
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "SYMBOLS": "BTCUSDT"})
    now = now_us()
    history_from = recorded_history_start(settings.data_dir, now - 3 * HOUR_US)  # the first start
    # The first start's sandbox as it would be now: its hour of history and the three hours since.
    first_config = sandbox_config(symbols=("BTCUSDT",), rate=RATE, history_seconds=(now - history_from) / 1e6 + 1)
    with serve_in_thread(first_config) as first:
        before = first_hour(first.rest_url, history_from)

    port = free_port()
    restart_history_us = history_start(settings.data_dir, now_us(), RATE)  # as `up` asks for it now
    plan = services(
        settings, port, RATE, free_port(), tmp_path / "airflow", sandbox_history_start_us=restart_history_us
    )
    sandbox = plan[0]
    assert sandbox.name == "sandbox exchange"
    with process_group(sandbox.argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:

        def answering() -> bool:
            assert process.poll() is None, f"the sandbox exited: {process.stderr.read().decode()}"
            try:
                return http_get(f"http://127.0.0.1:{port}/api/v3/ping")[0] == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_until(answering, 120, "the restarted sandbox answering /api/v3/ping")
        after = first_hour(f"http://127.0.0.1:{port}", history_from)

    assert len(before) > 0.9 * RATE * 3600, len(before)
    assert before[0]["time"] - history_from < 60_000_000  # the hour from its start
    assert after == before
