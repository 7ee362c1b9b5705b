"""``make up`` as a user runs it: the plan it starts, the settings and ports it refuses, a broken DAG it names.

The whole stack running end to end, faults, a restart and Ctrl-C included, is tests/test_faults_e2e.py.
Processes started here run with their data and Airflow home in a temporary folder, never in the repo's
``data/``, and are ended when the test ends, pass or fail (``tests/support/processes.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from include.cli import build_parser, main
from include.config import load_settings
from include.pools import POOLS
from include.sandbox_history import history_start
from include.timeutil import HOUR_US, hour_start_us, now_us
from include.up import LOCALHOST, airflow_services, services
from tests.support.checkout import fresh_clone
from tests.support.net import free_port
from tests.support.paths import REPO_ROOT
from tests.support.processes import descendants, process_group, run_to_end, tagged
from tests.support.up import OUTSIDE_SETTINGS, STARTUP_LIVENESS_SECONDS, Output, answers
from tests.support.waiting import wait_until

# The plan: what `make up` starts, in which order, with which settings ------------------------------


def test_the_plan_creates_the_pools_before_any_airflow_component_and_binds_everything_to_localhost(tmp_path):
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "SANDBOX_PORT": "9311"})
    plan = services(settings, 9311, 20.0, 8311, tmp_path / "airflow", dashboard_port=8511)

    sandbox, *airflow, dashboard = plan
    assert sandbox.argv[sandbox.argv.index("--host") + 1] == LOCALHOST
    assert sandbox.argv[sandbox.argv.index("--port") + 1] == "9311"
    assert [service.argv[1] for service in airflow] == ["api-server", "scheduler", "dag-processor", "triggerer"]
    # Before the first Airflow component starts: the database, then every pool of include/pools.py.
    first, *rest = airflow
    assert [command[1:3] for command in first.before_start] == [["db", "migrate"]] + [["pools", "set"]] * len(POOLS)
    assert [command[3:5] for command in first.before_start[1:]] == [[p.name, str(p.slots)] for p in POOLS]
    assert all(not service.before_start for service in rest)
    # Every listener on 127.0.0.1: the API server by flag and setting, the log servers not started at all.
    assert first.argv[first.argv.index("--host") + 1] == LOCALHOST
    assert first.argv[first.argv.index("--port") + 1] == "8311"
    for service in airflow:
        assert service.env is not None
        assert service.env["AIRFLOW__API__HOST"] == LOCALHOST
        assert service.env["AIRFLOW__API__BASE_URL"] == f"http://{LOCALHOST}:8311"
        assert service.env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
        # The tasks write where this process would: the temporary data folder, the sandbox on its port.
        assert service.env["DATA_DIR"] == str(tmp_path / "data")
        assert service.env["LAKE_URL"] == f"file://{tmp_path / 'data' / 'lake'}"
        assert service.env["BINANCE_REST_URL"] == "http://127.0.0.1:9311"
    # Every DAG of the repo is parsed and starts unpaused: the stream, its live gap fill, the hourly
    # repair and the warehouse run without anyone clicking in the UI.
    for service in airflow:
        assert service.env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags")
        assert service.env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    dag_files = {path.name for path in (REPO_ROOT / "dags").glob("*.py")}
    assert {"stream_trades.py", "fill_gaps.py", "repair_gaps.py", "warehouse.py"} <= dag_files
    for name in ("scheduler", "triggerer"):
        (service,) = [s for s in airflow if s.argv[1] == name]
        assert "--skip-serve-logs" in service.argv, name
    assert "standalone" not in [arg for service in plan for arg in service.argv]
    # The dashboard last (it reads what the DAGs publish), as users start it, on 127.0.0.1.
    assert dashboard.argv[1:4] == ["-m", "include.cli", "dashboard"]
    assert dashboard.argv[dashboard.argv.index("--host") + 1] == LOCALHOST
    assert dashboard.argv[dashboard.argv.index("--port") + 1] == "8511"
    assert dashboard.health_url == "http://127.0.0.1:8511/_stcore/health"
    assert dashboard.urls == {"Dashboard": "http://127.0.0.1:8511"}


def test_the_plan_on_live_binance_starts_no_sandbox(tmp_path):
    settings = load_settings({"EXCHANGE": "binance", "DATA_DIR": str(tmp_path)})
    plan = services(settings, 9100, 20.0, 8080, tmp_path / "airflow")
    assert [service.name for service in plan] == [
        "airflow api-server",
        "airflow scheduler",
        "airflow dag-processor",
        "airflow triggerer",
        "dashboard",
    ]


def test_a_second_plan_on_the_same_data_folder_asks_the_sandbox_for_history_from_the_first_start(tmp_path):
    settings = load_settings({"DATA_DIR": str(tmp_path / "data")})

    def sandbox_arguments(now: int) -> argparse.Namespace:
        """The sandbox of the plan `up` makes at ``now``, read by the sandbox's own command line."""
        plan = services(
            settings,
            9311,
            20.0,
            8311,
            tmp_path / "airflow",
            sandbox_history_start_us=history_start(settings.data_dir, now, 20.0),
        )
        assert plan[0].argv[1:4] == ["-m", "include.cli", "sandbox"]
        return build_parser().parse_args(plan[0].argv[3:])

    first_start = now_us()
    first = sandbox_arguments(first_start)
    again = sandbox_arguments(first_start + 5 * HOUR_US)  # restarted five hours later
    assert first.history_since == again.history_since == hour_start_us(first_start) - HOUR_US
    assert first.history == again.history == 3600  # and never less than the last hour


def test_up_stops_with_one_line_when_the_history_marker_is_not_a_time(tmp_path, monkeypatch, capsys):
    for name in OUTSIDE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    marker = tmp_path / "data" / "sandbox" / "history_start"
    marker.parent.mkdir(parents=True)
    marker.write_text("last tuesday\n")
    ports = [str(free_port()) for _ in range(3)]
    argv = ["up", "--sandbox-port", ports[0], "--airflow-port", ports[1], "--dashboard-port", ports[2]]
    argv += ["--airflow-home", str(tmp_path / "airflow")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: "), err
    assert str(marker) in err, err
    assert "'last tuesday'" in err, err
    assert not (tmp_path / "airflow").exists(), "up went on after refusing the marker"


def test_the_same_components_run_a_celery_deployment_when_its_settings_and_workers_are_given(tmp_path):
    settings = load_settings({"DATA_DIR": str(tmp_path / "data")})
    celery = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow@127.0.0.1:5432/airflow",
        "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    nodes = ["worker-a@host", "worker-b@host"]
    plan = airflow_services(settings, 8311, tmp_path / "airflow", airflow_settings=celery, celery_workers=nodes)

    local = airflow_services(settings, 8311, tmp_path / "airflow")
    assert [service.argv for service in plan[: len(local)]] == [service.argv for service in local]
    assert plan[0].before_start == local[0].before_start  # the same migration and pools, on the new database
    workers = plan[len(local) :]
    for worker, node in zip(workers, nodes, strict=True):
        assert worker.argv[1:] == ["celery", "worker", "--celery-hostname", node, "--skip-serve-logs"]
        assert not worker.before_start
    # Each worker its own log; every component the deployment's settings, the rest as `make up` has them.
    assert len({service.log_file for service in plan}) == len(plan)
    for service in plan:
        assert service.env is not None
        assert service.env.items() >= celery.items()
        assert service.env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags")
        assert service.env["LAKE_URL"] == settings.lake_url
    assert local[0].env is not None
    assert local[0].env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    # The maintenance DAG's tasks are told the database Airflow uses (they cannot read Airflow's own).
    assert {service.env["MAINTENANCE_DB_URL"] for service in plan} == {celery["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]}
    sqlite = f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert local[0].env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == local[0].env["MAINTENANCE_DB_URL"] == sqlite


# The supervisor --------------------------------------------------------------------------------------

SUPERVISED = """
import sys
from include.supervisor import Service, supervise

forever = [sys.executable, "-c", "import signal; signal.pause()"]  # a service that runs until stopped
failing_step = [sys.executable, "-c", "import sys; sys.exit('no database here')"]
first = Service(name="first", argv=forever)
second = Service(name="second", argv=forever, before_start=[failing_step])
sys.exit(supervise([first, second], startup_timeout=60))
"""


def test_a_failing_preparation_step_stops_what_was_started_and_names_the_command():
    argv = [sys.executable, "-c", SUPERVISED]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with process_group(argv, env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        out, err = run.communicate(timeout=STARTUP_LIVENESS_SECONDS)
        left = tagged(run.tag)  # before the test's own clean-up: what the supervisor left running
    assert run.returncode == 1, (out, err)
    assert "starting first" in out
    assert "starting second" not in out  # its preparation failed, so it never started
    assert "stopping first" in out
    (line,) = err.strip().splitlines()
    assert line.startswith("error: second: ")
    assert "failed (1): no database here" in line
    assert left == []


TASK_IN_ITS_OWN_GROUP = """
import os, subprocess, sys, time
from pathlib import Path
from include.supervisor import Service, supervise

marker = Path(sys.argv[1])
# Like Airflow's scheduler: the service runs a task in a process group of its own (setpgid), which
# tells the service it has started by leaving a marker; the supervisor's readiness waits for it.
task = f"import os, signal; os.setpgid(0, 0); open({str(marker)!r}, 'w').close(); signal.pause()"
start_task = f"import subprocess, sys, signal; subprocess.Popen([sys.executable, '-c', {task!r}]); signal.pause()"
scheduler = [sys.executable, "-c", start_task]
service = Service(name="scheduler", argv=scheduler, ready=lambda: None if marker.exists() else "start its task")
sys.exit(supervise([service], startup_timeout=60))
"""


def test_a_stop_ends_the_processes_a_service_started_in_process_groups_of_their_own(tmp_path):
    marker = tmp_path / "task-started"
    argv = [sys.executable, "-c", TASK_IN_ITS_OWN_GROUP, str(marker)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with process_group(argv, env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        wait_until(lambda: marker.exists() and len(tagged(run.tag)) == 3, 60, "the service to start its task")
        groups = {os.getpgid(process.pid) for process in tagged(run.tag)}
        assert len(groups) == 3, "the task is not in a process group of its own"
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=STARTUP_LIVENESS_SECONDS)
        left = tagged(run.tag)  # before the test's own clean-up: what the supervisor left running
    assert run.returncode == 0, (out, err)
    assert "did not stop within" not in out
    assert left == [], [process.cmdline() for process in left]


NOT_READY = """
import sys
from include.supervisor import Service, StartupError, supervise

forever = [sys.executable, "-c", "import signal; signal.pause()"]
looks = []


def ready():  # awaits a parse twice, then finds a broken file (or, told "never", awaits it for ever)
    looks.append(1)
    if len(looks) < 3 or sys.argv[1] == "never":
        return "parse dags/slow.py"
    raise StartupError("dags/broken.py failed to import: RuntimeError: broken on purpose")


first = Service(name="first", argv=forever, ready=ready)
second = Service(name="second", argv=forever)
sys.exit(supervise([first, second], startup_timeout=float(sys.argv[2])))
"""


@pytest.mark.parametrize(
    ("mode", "timeout", "error"),
    [
        ("broken", 60, "error: dags/broken.py failed to import: RuntimeError: broken on purpose"),
        ("never", 2, "error: first did not parse dags/slow.py within 2 s"),
    ],
)
def test_a_service_never_ready_stops_what_was_started_and_names_what_it_awaited(mode, timeout, error):
    argv = [sys.executable, "-c", NOT_READY, mode, str(timeout)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with process_group(argv, env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        out, err = run.communicate(timeout=STARTUP_LIVENESS_SECONDS)
        left = tagged(run.tag)
    assert run.returncode == 1, (out, err)
    assert "starting second" not in out  # the next service waits for the readiness, "up" too
    assert "cryptoflow is up" not in out
    assert "stopping first" in out
    assert err.strip().splitlines() == [error]
    assert left == []


# The real thing ------------------------------------------------------------------------------------


def run_up(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``up`` expected to refuse at once; were it to start, everything it started is ended all the same.
    Every port it is not told is a free one: a `make up` running beside the tests holds the defaults."""
    ports = {flag: str(free_port()) for flag in ("--sandbox-port", "--airflow-port", "--dashboard-port")}
    ports.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [sys.executable, "-m", "include.cli", "up", "--airflow-home", str(tmp_path / "airflow")]
    argv += [item for flag, port in ports.items() for item in (flag, port)]
    outside = {key: value for key, value in os.environ.items() if key not in OUTSIDE_SETTINGS}
    return run_to_end(argv, {**outside, "DATA_DIR": str(tmp_path / "data"), **env}, timeout=120, cwd=REPO_ROOT)


def test_up_refuses_a_bad_setting_naming_it(tmp_path):
    result = run_up(tmp_path, WAREHOUSE="oracle")
    assert result.returncode == 2
    assert "WAREHOUSE='oracle'" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


@pytest.mark.parametrize("flag", ["--sandbox-port", "--dashboard-port"])
def test_up_refuses_to_start_over_a_port_in_use_naming_it(tmp_path, flag):
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_up(tmp_path, flag, str(port))
    assert result.returncode == 2
    assert f"port {port} is already in use" in result.stderr


# A fresh clone: the manifest built, a DAG file that fails to import named -------------------------

BROKEN_DAG = '''"""A DAG file that fails at import, as one whose dependency is missing would."""
from airflow.sdk import dag  # noqa: F401

raise RuntimeError("this DAG file is broken on purpose")
'''


def living_descendants(existing: set[psutil.Process]) -> list[psutil.Process]:
    """The processes started below this one since ``existing`` was taken that still run (orphans come back
    to the test process, a subreaper; a zombie is dead, only not reaped yet)."""
    found = []
    for process in descendants() - existing:
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


@pytest.mark.slow
@pytest.mark.timeout(3 * STARTUP_LIVENESS_SECONDS)
def test_up_from_a_fresh_clone_builds_the_manifest_and_stops_naming_the_dag_file_that_fails_to_import(tmp_path):
    checkout = fresh_clone(tmp_path / "checkout")
    manifest = checkout / "include" / "dbt" / "target" / "manifest.json"
    assert not manifest.exists()  # not in git: a new user has none
    (checkout / "dags" / "broken_on_purpose.py").write_text(BROKEN_DAG)
    api_port, dashboard_port, unused = free_port(), free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in OUTSIDE_SETTINGS}
    # Live Binance's mode on an address nothing answers: no sandbox starts, and nothing leaves the machine.
    env.update(EXCHANGE="binance", BINANCE_REST_URL=f"http://127.0.0.1:{unused}", DATA_DIR=str(tmp_path / "data"))
    env.update(BINANCE_WS_URL=f"ws://127.0.0.1:{unused}")
    argv = [sys.executable, "-m", "include.cli", "up", "--airflow-port", str(api_port)]
    argv += ["--dashboard-port", str(dashboard_port), "--airflow-home", str(tmp_path / "airflow")]
    existing = descendants()
    with process_group(argv, env, cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as up:
        output = Output(up)
        wait_until(
            lambda: "cryptoflow is up" in output.text or up.poll() is not None,
            2 * STARTUP_LIVENESS_SECONDS,
            "up to stop or to report up",
        )
        assert "cryptoflow is up" not in output.text, output.text
        assert up.wait(60) == 1, output.text
        out, err = output.finished(30), up.stderr.read()
        left = living_descendants(existing)  # before the test's own clean-up: what `up` left running
    assert "building the dbt manifest: include/dbt/target/manifest.json is missing" in out
    assert manifest.is_file()
    # Only the broken file is named: every other one, dags/warehouse.py (which renders from the
    # manifest) included, was parsed, or it would be named as not parsed.
    expected = "error: dags/broken_on_purpose.py failed to import: RuntimeError: this DAG file is broken on purpose"
    assert err.strip().splitlines() == [expected], out
    assert "stopping airflow dag-processor" in out
    assert "starting airflow triggerer" not in out
    assert left == []
    assert not answers(LOCALHOST, api_port)


def test_up_stops_before_starting_anything_when_the_manifest_cannot_be_built(tmp_path):
    checkout = fresh_clone(tmp_path / "checkout")
    model = checkout / "include" / "dbt" / "models" / "marts" / "candles_2h.sql"
    model.write_text("select * from {{ ref('no_such_model') }}\n")  # a ref dbt cannot resolve: parse fails
    argv = [sys.executable, "-m", "include.cli", "up", "--airflow-home", str(tmp_path / "airflow")]
    argv += [
        item for flag in ("--sandbox-port", "--airflow-port", "--dashboard-port") for item in (flag, str(free_port()))
    ]
    env = {key: value for key, value in os.environ.items() if key not in OUTSIDE_SETTINGS}
    result = run_to_end(argv, {**env, "DATA_DIR": str(tmp_path / "data")}, timeout=300, cwd=checkout)
    assert result.returncode == 1, result
    assert "building the dbt manifest: include/dbt/target/manifest.json is missing" in result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the dbt manifest could not be built ("), line
    assert "no_such_model" in line
    assert line.endswith("; build it with make manifest (or: python -m include.transform_group)")
    assert "starting" not in result.stdout  # nothing was started
    assert not (tmp_path / "airflow").exists()
