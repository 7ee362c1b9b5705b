"""Talking to the sandbox (or any local server) over real sockets: HTTP, WebSocket, free ports."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.sync.client import ClientConnection, connect

from include.sandbox.server import RunningSandbox

MICRO = {"X-MBX-TIME-UNIT": "MICROSECOND"}  # ask the exchange for times in µs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def admin(sandbox: RunningSandbox | str) -> dict[str, Any]:
    """The sandbox's ``GET /admin``: fault settings, what the faults did, and the last trade ids."""
    base = sandbox if isinstance(sandbox, str) else sandbox.rest_url
    status, _, body = http_get(f"{base}/admin")
    assert status == 200, body
    return body


def set_faults(sandbox: RunningSandbox | str, changes: dict[str, float]) -> dict[str, Any]:
    """The sandbox's ``POST /admin``: change fault settings; the settings now in force."""
    base = sandbox if isinstance(sandbox, str) else sandbox.rest_url
    status, body = http_post_json(f"{base}/admin", changes)
    assert status == 200, body
    return body


@contextmanager
def ws_client(url: str) -> Iterator[ClientConnection]:
    """A plain client: no client-side pings (they would count against the 5/s limit), no proxy."""
    with connect(
        url, ping_interval=None, proxy=None, compression=None, max_queue=None, open_timeout=10, close_timeout=5
    ) as ws:
        yield ws


def http_post_json(url: str, payload: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
