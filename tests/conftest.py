"""Shared test fixtures: a real sandbox exchange on a real socket, and the shared Binance samples."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from include.sandbox.config import SandboxConfig
from include.sandbox.server import RunningSandbox, serve_in_thread

REPO_ROOT = Path(__file__).resolve().parents[1]
BINANCE_SAMPLES = REPO_ROOT.parent / "shared" / "data" / "binance"
BTCUSDT_DUMP = BINANCE_SAMPLES / "BTCUSDT-trades-2021-01-08-head2001.csv"


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """A sandbox on a free port; keyword arguments override SandboxConfig fields."""
    return replace(SandboxConfig(port=0), **overrides)


@pytest.fixture
def start_sandbox() -> Callable[..., AbstractContextManager[RunningSandbox]]:
    """``with start_sandbox(rate=50, ...) as sandbox:`` serves a sandbox for the block."""
    return lambda **overrides: serve_in_thread(sandbox_config(**overrides))


@pytest.fixture(scope="module")
def history_sandbox() -> Iterator[RunningSandbox]:
    """A sandbox with two hours of synthetic history at 2 trades/s, shared by a test module."""
    with serve_in_thread(sandbox_config(rate=2.0, history_seconds=2 * 3600)) as sandbox:
        yield sandbox


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """GET a URL; the status, the headers and the decoded JSON body (or text), errors included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, head, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, head, body = error.code, dict(error.headers), error.read()
    try:
        return status, head, json.loads(body)
    except json.JSONDecodeError:
        return status, head, body.decode()


def http_post_json(url: str, payload: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
