"""``make up`` as a test runs it: the command line, its output read in a thread, and what it listens on."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from include.supervisor import Service
from tests.support.net import free_port, http_get
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group, run_to_end
from tests.support.waiting import wait_until

# A cold start (database migration, four Airflow components) took about 100 s on these machines;
# the liveness timeout is several times that, so only a hung start fails.
STARTUP_LIVENESS_SECONDS = 600
# Variables a developer may have set that would point the test's pipeline elsewhere.
OUTSIDE_SETTINGS = ("EXCHANGE", "SANDBOX_PORT", "BINANCE_REST_URL", "BINANCE_WS_URL", "LAKE_URL", "DUCKDB_PATH")
UP_PRINTED = "Press Ctrl-C to stop."


class Output:
    """A process's output, read line by line in a thread, so waiting for a line never blocks past a deadline."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def finished(self, timeout: float) -> str:
        self._reader.join(timeout)
        return self.text


def answers(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.settimeout(5)
        return probe.connect_ex((host, port)) == 0


def listening_addresses(root: psutil.Process) -> dict[tuple[str, int], str]:
    """Every address a process or its descendants listen on, with the listener's command line."""
    found = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            sockets, command = process.net_connections(kind="inet"), " ".join(process.cmdline()[:3])
        except psutil.Error:
            continue
        for sock in sockets:
            if sock.status == psutil.CONN_LISTEN:
                found[(sock.laddr.ip, sock.laddr.port)] = command
    return found


def all_components_healthy(api_port: int) -> bool:
    """The API server's health check: scheduler, dag-processor and triggerer heartbeating."""
    status, _, health = http_get(f"http://127.0.0.1:{api_port}/api/v2/monitor/health")
    components = ("metadatabase", "scheduler", "dag_processor", "triggerer")
    return status == 200 and all(health.get(name, {}).get("status") == "healthy" for name in components)


@dataclass
class UpCommand:
    """One ``make up`` deployment in a temporary folder: the same ports, data and Airflow home each start."""

    tmp_path: Path
    symbols: str = "BTCUSDT,XRPETH"
    sandbox_rate: float = 20.0

    def __post_init__(self) -> None:
        self.sandbox_port, self.api_port, self.dashboard_port = free_port(), free_port(), free_port()
        self.data_dir, self.airflow_home = self.tmp_path / "data", self.tmp_path / "airflow"

    @property
    def argv(self) -> list[str]:
        return [
            *(sys.executable, "-m", "include.cli", "up", "--sandbox-port", str(self.sandbox_port)),
            *("--sandbox-rate", str(self.sandbox_rate), "--airflow-port", str(self.api_port)),
            *("--airflow-home", str(self.airflow_home), "--dashboard-port", str(self.dashboard_port)),
        ]

    @property
    def env(self) -> dict[str, str]:
        outside = {key: value for key, value in os.environ.items() if key not in OUTSIDE_SETTINGS}
        return {**outside, "SYMBOLS": self.symbols, "DATA_DIR": str(self.data_dir)}

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[tuple[subprocess.Popen, Output]]:
        """``up`` until the block ends, yielded once it printed its URLs; every process it started is
        ended on the way out, pass or fail (the block stops it with Ctrl-C itself to test the stop)."""
        with process_group(
            self.argv, self.env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as up:
            output = Output(up)
            wait_until(
                lambda: UP_PRINTED in output.text or up.poll() is not None,
                STARTUP_LIVENESS_SECONDS,
                "make up printing its URLs",
            )
            assert up.poll() is None, output.text
            yield up, output


def url_answers(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def wait_healthy(service: Service, process: subprocess.Popen, timeout: float) -> None:
    """Until the service answers its health check (if it has one); it must not exit meanwhile."""
    url = service.health_url
    if url is not None:
        wait_until(lambda: url_answers(url) or process.poll() is not None, timeout, f"{service.name} healthy")
    assert process.poll() is None, f"{service.name} exited: {service.log_file.read_text()[-3000:]}"


@contextlib.contextmanager
def running_services(plan: list[Service], timeout: float) -> Iterator[None]:
    """The plan's services (``include.up.airflow_services``), started in order as `make up`'s supervisor
    starts them: each one's preparation first, then the service, then its health check (each within
    ``timeout``). All are stopped together on exit, pass or fail."""
    with contextlib.ExitStack() as stack:
        processes: list[subprocess.Popen] = []
        for service in plan:
            for command in service.before_start:
                done = run_to_end(list(command), service.env, timeout=timeout, cwd=REPO_ROOT)
                assert done.returncode == 0, f"{' '.join(command[:4])}: {(done.stderr or done.stdout)[-2000:]}"
            assert service.log_file is not None
            output = stack.enter_context(service.log_file.open("ab"))
            process = stack.enter_context(
                process_group(list(service.argv), service.env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
            )
            processes.append(process)
            wait_healthy(service, process, timeout)
        try:
            yield
        finally:
            for process in processes:  # all at once; each process_group then waits for its own
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
