"""The REST API of an Airflow a test started, and waiting on it with the Airflow log at hand.

The test's Airflow runs the simple auth manager with every user an admin (as ``make up`` does, on
127.0.0.1 only), so the API answers without a token.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from include.lake.keys import BATCH_PREFIX
from include.lake.store import ObjectStore
from include.timeutil import HOUR_US, from_us, hour_start_us, now_us
from tests.support.net import http_post_json
from tests.support.waiting import wait_until


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def explained(condition: Callable[[], Any]) -> Callable[[], Any]:
    """``condition`` for ``wait_until``: an API or file not answering yet counts as not yet."""

    def check() -> Any:
        try:
            return condition()
        except OSError:
            return None

    return check


def airflow_log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


class Airflow:
    """The REST API (``http://127.0.0.1:PORT/api/v2``) of the test's Airflow; the tails of its ``logs``
    are shown when a wait fails."""

    def __init__(self, api: str, *logs: Path) -> None:
        self.api, self.logs = api, logs

    def get(self, path: str) -> Any:
        return get_json(f"{self.api}{path}")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        status, answer = http_post_json(f"{self.api}{path}", body)
        assert status == 200, (path, status, answer)
        return answer

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return wait_until(explained(condition), timeout, what, interval=1.0)
        except AssertionError as error:
            tails = "\n".join(f"--- {log.name}:\n{airflow_log_tail(log)}" for log in self.logs)
            raise AssertionError(f"{error}; Airflow log tails:\n{tails}") from None

    def runs(self, dag_id: str, query: str = "") -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns?limit=100{query}")["dag_runs"]


def trigger_repairs(airflow: Airflow, first_us: int, until_us: int) -> list[str]:
    """A repair run for every hour window from the one holding ``first_us`` to the one before ``until_us``,
    without the grace delay: the scheduled runs wait five minutes past the hour, the test does not."""
    run_ids = []
    for start_us in range(hour_start_us(first_us), hour_start_us(until_us), HOUR_US):
        body = {
            "logical_date": from_us(now_us()).isoformat(),
            "data_interval_start": from_us(start_us).isoformat(),
            "data_interval_end": from_us(start_us + HOUR_US).isoformat(),
            "conf": {"grace_minutes": 0},
        }
        run_ids.append(airflow.post("/dags/repair_gaps/dagRuns", body)["dag_run_id"])
    return run_ids


def first_stream_key(lake: ObjectStore) -> str | None:
    """The key of some micro-batch a stream task wrote, once one has."""
    return next((info.key for info in lake.list(BATCH_PREFIX)), None)
