"""``make up`` as a user runs it: everything starts, the URLs are printed, Ctrl-C stops it cleanly."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support.net import free_port, http_get
from tests.support.paths import REPO_ROOT


def read_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        if time.monotonic() > deadline or process.poll() is not None:
            raise AssertionError(f"{marker!r} not printed; output so far:\n{seen}")
        seen += process.stdout.readline()
    return seen


@pytest.mark.slow
def test_up_starts_the_sandbox_prints_urls_and_stops_on_ctrl_c():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "include.cli", "up", "--sandbox-port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SYMBOLS": "BTCUSDT,XRPETH"},
    )
    try:
        output = read_until(process, "Press Ctrl-C to stop.", timeout=60)
        assert f"http://127.0.0.1:{port}/admin" in output
        status, _, trades = http_get(f"http://127.0.0.1:{port}/api/v3/trades?symbol=XRPETH&limit=5")
        assert status == 200
        assert len(trades) == 5
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "stopped." in rest
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_up_refuses_a_bad_setting_naming_it():
    result = subprocess.run(
        [sys.executable, "-m", "include.cli", "up"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "WAREHOUSE": "oracle"},
        timeout=60,
    )
    assert result.returncode == 2
    assert "WAREHOUSE='oracle'" in result.stderr


def test_up_refuses_to_start_over_a_port_in_use_naming_it():
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "include.cli", "up", "--sandbox-port", str(port)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} is already in use" in result.stderr
