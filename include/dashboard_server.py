"""Serving the dashboard: ``streamlit run dashboard/app.py`` as a child of ``python -m include.cli dashboard``.

The command line is the one place that knows how the dashboard is served (``make up``, the browser
tests and the benchmark all start it through here): headless, on the given address only, sending
nothing anywhere and watching no files (the app is not edited while it runs). The server runs in the
repository's root with the root first on ``PYTHONPATH``: ``streamlit run`` puts only the script's
folder on ``sys.path``, and the app imports ``dashboard`` and ``include`` as packages. Its look
(the theme) is Streamlit's own config, ``dashboard/.streamlit/config.toml``, which Streamlit reads
beside the script whatever the working directory.

The server is a child in this process's group, so a Ctrl-C in a terminal or a ``killpg`` by a
supervisor reaches both; a signal sent to this process alone is passed on to it. Either way the
command waits for Streamlit to stop and exits with its status: 0 on a stop asked for, as the other
long-running commands do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_APP = REPO_ROOT / "dashboard" / "app.py"
DEFAULT_HOST = "127.0.0.1"  # no login: never reachable from other machines unless asked for
DEFAULT_PORT = 8501
HEALTH_PATH = "/_stcore/health"
STOP_GRACE_SECONDS = 15.0  # after a forwarded signal, how long Streamlit may take before it is killed


class ServeError(Exception):
    """The dashboard cannot be served as asked (e.g. the address is taken); the message names it."""


def streamlit_argv(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, script: Path = DASHBOARD_APP) -> list[str]:
    """``streamlit run SCRIPT`` headless on HOST:PORT, no usage statistics, no file watching."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.headless=true",
        f"--server.address={host}",
        f"--server.port={port}",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
        "--client.toolbarMode=minimal",  # no Deploy button or developer menu in front of users
    ]


def streamlit_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the repository's root first on ``PYTHONPATH``."""
    environment = dict(os.environ if base is None else base)
    paths = [str(REPO_ROOT), *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))  # once each, the root first
    return environment


def dashboard_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_listenable(host: str, port: int) -> None:
    """Raise ServeError naming HOST:PORT when no server could listen there (unknown name, not this
    machine's address, port taken): found out before Streamlit's slow start, in one line."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    family, kind, protocol, _, address = addresses[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket does
        try:
            probe.bind(address)
        except OSError as error:
            raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from None


@contextlib.contextmanager
def _forwarding_signals(child: subprocess.Popen[bytes], stops: list[int]) -> Iterator[None]:
    """SIGINT and SIGTERM to this process are passed on to the child and recorded in ``stops``."""

    def forward(signum: int, _frame: object) -> None:
        stops.append(signum)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(child: subprocess.Popen[bytes], stops: list[int]) -> int:
    """The child's exit status; once a stop was asked for, it has STOP_GRACE_SECONDS before a SIGKILL."""
    deadline: float | None = None
    while child.poll() is None:
        if stops and deadline is None:
            deadline = time.monotonic() + STOP_GRACE_SECONDS
        if deadline is not None and time.monotonic() > deadline:
            print(f"streamlit did not stop within {STOP_GRACE_SECONDS:.0f} s; killing it", file=sys.stderr)
            child.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(0.5)
    return child.returncode


def serve(host: str, port: int) -> int:
    """Serve the dashboard until Ctrl-C or SIGTERM, or until Streamlit exits on its own: its exit status
    (0 when it stopped on a signal, as it does; 128 + N when signal N had to kill it)."""
    check_listenable(host, port)
    print(f"dashboard: {dashboard_url(host, port)}", flush=True)
    stops: list[int] = []
    child = subprocess.Popen(streamlit_argv(host, port), cwd=REPO_ROOT, env=streamlit_environment())
    try:
        with _forwarding_signals(child, stops):
            status = _wait(child, stops)
    finally:
        if child.poll() is None:  # this process is failing: leave no server behind
            child.kill()
            child.wait()
    return status if status >= 0 else 128 - status  # killed by a signal: the shell's convention
