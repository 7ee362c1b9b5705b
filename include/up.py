"""What ``make up`` runs on the embedded defaults: the services of the product, in start order.

1. the sandbox exchange (unless ``EXCHANGE=binance``),
2. Airflow (``airflow standalone``: api-server, scheduler, dag-processor, triggerer on SQLite with
   the LocalExecutor), with this repo's ``dags/`` and ``plugins/``, DAGs unpaused, so the stream
   starts at once and gap repair runs for every closed hour window.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from include.config import Settings, load_settings
from include.pools import POOLS
from include.supervisor import Service, supervise

REPO_ROOT = Path(__file__).resolve().parents[1]


def airflow_env(airflow_home: Path, settings: Settings, api_port: int) -> dict[str, str]:
    """The environment of every Airflow process: this repo's DAGs, plugins and code, dev defaults."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        # standalone starts its components as `airflow ...` from PATH: this virtualenv's
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # Local development: every user of the UI is an admin, no password to look up.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        # The stream's worker runs in the task process: relative paths (data/, spool) start here.
        "LAKE_URL": settings.lake_url,
        "BINANCE_WS_URL": settings.ws_url,
        "BINANCE_REST_URL": settings.rest_url,
        "SYMBOLS": ",".join(settings.symbols),
        "DUCKDB_PATH": str(settings.duckdb_path.resolve()),
    }


def services(settings: Settings, sandbox_port: int, sandbox_rate: float, api_port: int) -> list[Service]:
    python = sys.executable
    started: list[Service] = []
    if settings.exchange == "sandbox":
        base = f"127.0.0.1:{sandbox_port}"
        started.append(
            Service(
                name="sandbox exchange",
                argv=[
                    python,
                    "-m",
                    "include.cli",
                    "sandbox",
                    "--port",
                    str(sandbox_port),
                    "--symbols",
                    ",".join(settings.symbols),
                    "--rate",
                    str(sandbox_rate),
                    "--history",
                    "3600",
                ],
                health_url=f"http://{base}/api/v3/ping",
                urls={
                    "sandbox REST": f"http://{base}/api/v3/klines?symbol={settings.symbols[0]}&interval=1m",
                    "sandbox WebSocket": f"ws://{base}/stream?streams={settings.symbols[0].lower()}@trade",
                    "sandbox admin (faults)": f"http://{base}/admin",
                },
            )
        )
    airflow = str(Path(python).with_name("airflow"))
    airflow_home = REPO_ROOT / "airflow_home"
    airflow_home.mkdir(exist_ok=True)
    started.append(
        Service(
            name="airflow",
            argv=[airflow, "standalone"],
            env=airflow_env(airflow_home, settings, api_port),
            log_file=airflow_home / "standalone.log",
            after_start=[[airflow, "pools", "set", pool.name, str(pool.slots), pool.description] for pool in POOLS],
            health_url=f"http://127.0.0.1:{api_port}/api/v2/monitor/health",
            urls={
                "Airflow UI": f"http://127.0.0.1:{api_port}",
                "lake": settings.lake_url,
            },
        )
    )
    return started


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def run(sandbox_port: int, sandbox_rate: float, api_port: int) -> int:
    settings = load_settings()
    # A service left over from an earlier run would answer our health checks in place of ours.
    busy = [port for port in (sandbox_port, api_port) if _port_in_use(port)]
    if busy:
        print(f"error: port {busy[0]} is already in use (is another `make up` running?)", file=sys.stderr)
        return 2
    os.chdir(REPO_ROOT)
    return supervise(services(settings, sandbox_port, sandbox_rate, api_port), startup_timeout=180)
