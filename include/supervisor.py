"""``make up``: start the product's processes, print where they are, and stop them all on Ctrl-C.

Each service is a child process in its own session, so Ctrl-C reaches only this supervisor, which
then stops the services in reverse order: SIGTERM first (the sandbox sends ``serverShutdown``, the
stream worker flushes), SIGKILL for anything still alive after the grace period. A stop reaches
every process of the service's session, not only its process group: Airflow runs each task in a
process group of its own, which a signal to the scheduler's group misses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

GRACE_SECONDS = 15.0


@dataclass
class Service:
    name: str
    argv: Sequence[str]
    health_url: str | None = None  # polled until it answers before the next service starts
    urls: dict[str, str] = field(default_factory=dict)  # printed for the user once everything is up
    env: dict[str, str] | None = None
    log_file: Path | None = None  # where its output goes; None: this terminal
    # Commands run to completion, in order, before it starts (e.g. a database migration).
    before_start: list[Sequence[str]] = field(default_factory=list)
    # Polled after health_url answers, until it returns None: a readiness no URL shows (e.g. every DAG file
    # parsed). Else it returns what is awaited ("parse dags/x.py"), or raises StartupError for what no
    # wait can fix (a DAG file that failed to import).
    ready: Callable[[], str | None] | None = None


class StartupError(RuntimeError):
    pass


def _awaiting(service: Service) -> str | None:
    """What the service has yet to do before it counts as started; None once it has done it all."""
    if service.health_url is not None:
        try:
            with urllib.request.urlopen(service.health_url, timeout=2):
                pass
        except (urllib.error.URLError, OSError):
            return f"answer {service.health_url}"
    return None if service.ready is None else service.ready()


def _wait_healthy(
    service: Service, process: subprocess.Popen[bytes], timeout: float, stop_requested: threading.Event
) -> None:
    if service.health_url is None and service.ready is None:
        return
    deadline = time.monotonic() + timeout
    awaited = None
    while time.monotonic() < deadline and not stop_requested.is_set():
        if process.poll() is not None:
            raise StartupError(f"{service.name} exited with status {process.returncode} while starting")
        awaited = _awaiting(service)
        if awaited is None:
            return
        time.sleep(0.3)
    if stop_requested.is_set():
        return
    raise StartupError(f"{service.name} did not {awaited} within {timeout:.0f} s")


def _session(process: subprocess.Popen[bytes]) -> list[int]:
    """The live processes of the service's session: it and everything it started, whatever process
    group they moved to (a zombie, already ended, is not one)."""
    members = []
    for candidate in psutil.process_iter():
        try:
            if os.getsid(candidate.pid) == process.pid and candidate.status() != psutil.STATUS_ZOMBIE:
                members.append(candidate.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _signal_session(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the service and everything it started, each process once."""
    for pid in _session(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _stop(running: list[tuple[Service, subprocess.Popen[bytes]]]) -> None:
    for service, process in reversed(running):
        print(f"stopping {service.name} ...", flush=True)
        _signal_session(process, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline:
            process.poll()  # reap the leader, so that it no longer counts
            if not _session(process):
                break
            time.sleep(0.2)
        else:
            print(f"{service.name} did not stop within {GRACE_SECONDS:.0f} s; killing it", flush=True)
            _signal_session(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)


def _run_before(service: Service, timeout: float) -> None:
    """The service's preparation commands, each to completion; a failure names the command."""
    for command in service.before_start:
        print(f"  {' '.join(command[:4])} ...", flush=True)
        try:
            done = subprocess.run(command, env=service.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StartupError(f"{service.name}: {' '.join(command)} did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StartupError(f"{service.name}: {' '.join(command)} failed ({done.returncode}): {last[0]}")


def _start(service: Service) -> subprocess.Popen[bytes]:
    """Start the service in its own session (its own process group), its output to its log file."""
    print(f"starting {service.name} ...", flush=True)
    output = None
    if service.log_file is not None:
        service.log_file.parent.mkdir(parents=True, exist_ok=True)
        output = service.log_file.open("ab")
        print(f"  (its output goes to {service.log_file})", flush=True)
    try:
        return subprocess.Popen(
            service.argv, env=service.env, start_new_session=True, stdout=output, stderr=subprocess.STDOUT
        )
    finally:
        if output is not None:
            output.close()  # the child has its own copy


def _print_urls(services: Sequence[Service]) -> None:
    print("\ncryptoflow is up:", flush=True)
    for service in services:
        for label, url in service.urls.items():
            print(f"  {label:<28} {url}", flush=True)
    print("\nPress Ctrl-C to stop.\n", flush=True)


def _watch(running: list[tuple[Service, subprocess.Popen[bytes]]], stop_requested: threading.Event) -> int:
    """Until a stop is asked for (0) or a service exits on its own (1)."""
    while not stop_requested.wait(0.5):
        for service, process in running:
            if process.poll() is not None:
                print(f"{service.name} exited with status {process.returncode}", file=sys.stderr, flush=True)
                return 1
    return 0


def supervise(services: Sequence[Service], startup_timeout: float = 120.0) -> int:
    """Run the services until Ctrl-C, SIGTERM or one of them exits; 0 when stopped on request."""
    stop_requested = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop_requested.set())
    running: list[tuple[Service, subprocess.Popen[bytes]]] = []
    try:
        for service in services:
            _run_before(service, startup_timeout)
            if stop_requested.is_set():
                return 0
            process = _start(service)
            running.append((service, process))
            _wait_healthy(service, process, startup_timeout, stop_requested)
            if stop_requested.is_set():
                return 0
        _print_urls(services)
        return _watch(running, stop_requested)
    except StartupError as error:
        if stop_requested.is_set():  # Ctrl-C reached a preparation command too: a stop, not a failure
            return 0
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        _stop(running)
        print("stopped.", flush=True)
