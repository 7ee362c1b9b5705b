"""What ``make up`` runs on the embedded defaults: the services of the product, in start order.

1. the sandbox exchange (unless ``EXCHANGE=binance``), serving history from the start of the hour
   before the first start on the data folder (include/sandbox_history.py), so that a restart still serves every window
   the lake and the repair DAG know about,
2. Airflow, one process per component, with this repo's ``dags/`` and ``plugins/`` and every DAG
   unpaused (``DAGS_ARE_PAUSED_AT_CREATION=False``), so the stream starts at once, each gap it
   records is filled by ``fill_gaps`` within seconds and gap repair runs for every closed hour window:
   first the metadata database is migrated and the pools are created, so that the scheduler never
   sees a task whose pool does not exist yet; then the API server (UI), scheduler, dag-processor
   and triggerer (SQLite, LocalExecutor);
3. the dashboard (``python -m include.cli dashboard``), which reads the snapshot the warehouse DAG
   publishes after each transform.

Before anything starts, the dbt manifest the warehouse DAG renders from is built when it is missing
or stale (include/manifest.py); "cryptoflow is up" is printed only once the dag-processor has parsed
every DAG file without an import error.

Everything listens on 127.0.0.1 only: the UI has no login in this local setup, so it must not be
reachable from other machines. That is why the components are started one by one rather than with
``airflow standalone``: its scheduler and triggerer also serve their task logs on every address
(a port no setting can move to 127.0.0.1); here they run with ``--skip-serve-logs``, and the API
server reads the task logs from the shared local log folder instead.

The same functions describe a distributed deployment when given its Airflow settings (another
executor, metadata database and broker: ``airflow_settings``) and Celery workers to start
(``celery_workers``): tests/test_topology.py runs the DAGs that way, on PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from include.config import SANDBOX_PORT, Settings, load_settings
from include.dag_parsing import EveryDagParsed
from include.dashboard_server import DEFAULT_PORT as DASHBOARD_PORT
from include.dashboard_server import HEALTH_PATH, dashboard_url
from include.manifest import ensure_manifest
from include.pools import set_commands
from include.sandbox_history import FIRST_HISTORY_US, HistoryMarkerError, history_start
from include.supervisor import Service, supervise
from include.timeutil import MICROS_PER_SECOND, from_us, now_us

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCALHOST = "127.0.0.1"  # every service of `make up` listens here and nowhere else
DEFAULT_AIRFLOW_HOME = REPO_ROOT / "airflow_home"


def airflow_env(
    airflow_home: Path, settings: Settings, api_port: int, airflow_settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of every Airflow process: this repo's DAGs, plugins and code, dev defaults.

    ``airflow_settings`` (``AIRFLOW__...`` variables) replace the defaults: e.g. CeleryExecutor with
    its broker and a PostgreSQL metadata database instead of LocalExecutor on SQLite.
    """
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        # Airflow starts its own helpers as `airflow ...` from PATH: this virtualenv's
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Local development on 127.0.0.1 only: every user of the UI is an admin, no password to look up.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        # These machines are offline, and nothing about a user's runs leaves them anyway.
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(airflow_home / "cosmos"),
        # The dbt producer is never retried (dags/warehouse.py), so Cosmos' backup of its XComs for a retry
        # is waste: on by default, it rewrote an Airflow Variable of every status so far on each of the
        # build's ~140 XCom pushes, a quarter of the API server's CPU under make up.
        "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",
        "AIRFLOW__API__HOST": LOCALHOST,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://{LOCALHOST}:{api_port}",
        # The stream's worker runs in the task process: the same settings as this process's.
        "DATA_DIR": str(settings.data_dir),
        "LAKE_URL": settings.lake_url,
        "BINANCE_WS_URL": settings.ws_url,
        "BINANCE_REST_URL": settings.rest_url,
        "SYMBOLS": ",".join(settings.symbols),
        "DUCKDB_PATH": str(settings.duckdb_path),
        # The metadata database, named once: SQLite in the Airflow home unless the settings say otherwise.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": os.environ.get(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{airflow_home / 'airflow.db'}"
        ),
        **(airflow_settings or {}),
    }
    # Airflow 3 hides its metadata database from task processes; the maintenance DAG is told it here.
    env["MAINTENANCE_DB_URL"] = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    return env


def sandbox_service(
    settings: Settings, sandbox_port: int, sandbox_rate: float, history_start_us: int | None = None
) -> Service:
    """The sandbox with the last hour of history, or history from ``history_start_us`` when earlier."""
    base = f"{LOCALHOST}:{sandbox_port}"
    symbols = ",".join(settings.symbols)
    history = ["--history", str(FIRST_HISTORY_US // MICROS_PER_SECOND)]
    if history_start_us is not None:
        history += ["--history-since", from_us(history_start_us).isoformat()]
    return Service(
        name="sandbox exchange",
        argv=[
            *(sys.executable, "-m", "include.cli", "sandbox", "--host", LOCALHOST, "--port", str(sandbox_port)),
            *("--symbols", symbols, "--rate", str(sandbox_rate), *history),
        ],
        health_url=f"http://{base}/api/v3/ping",
        urls={
            "sandbox REST": f"http://{base}/api/v3/klines?symbol={settings.symbols[0]}&interval=1m",
            "sandbox WebSocket": f"ws://{base}/stream?streams={settings.symbols[0].lower()}@trade",
            "sandbox admin (faults)": f"http://{base}/admin",
        },
    )


def airflow_services(
    settings: Settings,
    api_port: int,
    airflow_home: Path,
    airflow_settings: Mapping[str, str] | None = None,
    celery_workers: Sequence[str] = (),
) -> list[Service]:
    """The database and pools first, then the API server, then the components that run DAGs.

    ``celery_workers``: the Celery node names (``worker-a@host``) of the workers to start as well,
    for a CeleryExecutor that ``airflow_settings`` configure.
    """
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = airflow_env(airflow_home, settings, api_port, airflow_settings)
    prepare = [[airflow, "db", "migrate"], *set_commands(airflow)]

    def component(*argv: str, name: str | None = None) -> Service:
        name = name or argv[0]
        return Service(name=f"airflow {name}", argv=[airflow, *argv], env=env, log_file=airflow_home / f"{name}.log")

    api_server = component("api-server", "--host", LOCALHOST, "--port", str(api_port))
    api_server.before_start = prepare
    api_server.health_url = f"http://{LOCALHOST}:{api_port}/api/v2/monitor/health"
    api_server.urls = {"Airflow UI": f"http://{LOCALHOST}:{api_port}", "lake": settings.lake_url}
    # Counts as started once every DAG file has parsed: what follows it, and "cryptoflow is up", wait;
    # a DAG file that fails to import stops `up`, naming it (include/dag_parsing.py).
    dag_processor = component("dag-processor")
    dag_processor.ready = EveryDagParsed(f"http://{LOCALHOST}:{api_port}", Path(env["AIRFLOW__CORE__DAGS_FOLDER"]))
    # On one machine, a worker's log server would listen on every address, on the port every worker
    # wants: the API server reads their task logs from the shared log folder, as for the others.
    workers = [
        component(
            "celery", "worker", "--celery-hostname", node, "--skip-serve-logs", name=f"celery-{node.split('@')[0]}"
        )
        for node in celery_workers
    ]
    return [
        api_server,
        component("scheduler", "--skip-serve-logs"),
        dag_processor,
        component("triggerer", "--skip-serve-logs"),
        *workers,
    ]


def dashboard_service(port: int) -> Service:
    """The dashboard as users start it, on 127.0.0.1; its environment is this process's (the same settings)."""
    url = dashboard_url(LOCALHOST, port)
    return Service(
        name="dashboard",
        argv=[sys.executable, "-m", "include.cli", "dashboard", "--host", LOCALHOST, "--port", str(port)],
        health_url=f"{url}{HEALTH_PATH}",
        urls={"Dashboard": url},
    )


def services(
    settings: Settings,
    sandbox_port: int,
    sandbox_rate: float,
    api_port: int,
    airflow_home: Path,
    dashboard_port: int = DASHBOARD_PORT,
    sandbox_history_start_us: int | None = None,
) -> list[Service]:
    """What `up` starts, in order. ``sandbox_history_start_us``: where the sandbox's history begins
    (``include.sandbox_history.history_start``), else it serves the last hour."""
    started = (
        [sandbox_service(settings, sandbox_port, sandbox_rate, sandbox_history_start_us)]
        if settings.exchange == "sandbox"
        else []
    )
    return started + airflow_services(settings, api_port, airflow_home) + [dashboard_service(dashboard_port)]


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((LOCALHOST, port)) == 0


def run(
    sandbox_port: int | None,
    sandbox_rate: float,
    api_port: int,
    airflow_home: Path | None = None,
    dashboard_port: int = DASHBOARD_PORT,
) -> int:
    settings = load_settings()  # every variable checked, SANDBOX_PORT included, before anything starts
    if sandbox_port is None:
        sandbox_port = int(os.environ.get("SANDBOX_PORT", SANDBOX_PORT))
    else:  # --sandbox-port wins, and the URLs the pipeline uses must point at that port too
        settings = load_settings({**os.environ, "SANDBOX_PORT": str(sandbox_port)})
    # A service left over from an earlier run would answer our health checks in place of ours.
    busy = [port for port in (sandbox_port, api_port, dashboard_port) if _port_in_use(port)]
    if busy:
        print(f"error: port {busy[0]} is already in use (is another `make up` running?)", file=sys.stderr)
        return 2
    # Where the sandbox's history begins: recorded on the data folder's first start, read on the next.
    try:
        history_start_us = (
            history_start(settings.data_dir, now_us(), sandbox_rate) if settings.exchange == "sandbox" else None
        )
    except HistoryMarkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # The warehouse DAG renders from dbt's manifest: without it, it would fail to import on every parse.
    manifest_problem = ensure_manifest()
    if manifest_problem is not None:
        print(f"error: {manifest_problem}", file=sys.stderr)
        return 1
    airflow_home = (airflow_home or DEFAULT_AIRFLOW_HOME).resolve()
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.chdir(REPO_ROOT)
    plan = services(settings, sandbox_port, sandbox_rate, api_port, airflow_home, dashboard_port, history_start_us)
    return supervise(plan, startup_timeout=300)
