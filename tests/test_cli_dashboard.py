"""The dashboard's commands: ``dashboard`` serves it (a real Streamlit process), ``publish`` and
``transform`` publish the snapshot it reads."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path

import duckdb
import psutil
import pytest

from include.dashboard_server import HEALTH_PATH, streamlit_argv, streamlit_environment
from include.warehouse.snapshot import SNAPSHOT_TABLES
from tests.support.dashboard import assert_snapshot_equals_warehouse
from tests.support.net import free_port, http_get
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group, tagged
from tests.support.up import listening_addresses
from tests.support.waiting import wait_until
from tests.test_cli import OUTSIDE_SETTINGS, assert_one_line_error, run_cli, run_main

# A cold Streamlit import on a busy 2-core machine takes tens of seconds: only a hung start fails.
SERVER_START_SECONDS = 120


def test_the_streamlit_command_is_headless_on_the_address_asked_for_and_sends_nothing():
    argv = streamlit_argv("127.0.0.1", 8765)
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "dashboard" / "app.py")]
    for flag in (
        "--server.headless=true",
        "--server.address=127.0.0.1",
        "--server.port=8765",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
    ):
        assert flag in argv


def test_the_servers_environment_puts_the_repository_first_on_pythonpath_once():
    elsewhere = os.pathsep.join(["/opt/site", str(REPO_ROOT), "/opt/more"])
    environment = streamlit_environment({"PYTHONPATH": elsewhere, "SYMBOLS": "BTCUSDT"})
    assert environment == {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), "/opt/site", "/opt/more"]),
        "SYMBOLS": "BTCUSDT",
    }
    assert streamlit_environment({})["PYTHONPATH"] == str(REPO_ROOT)


# A real dashboard process ----------------------------------------------------------------------------


def _streamlit_child(process: subprocess.Popen) -> psutil.Process:
    [child] = [
        child for child in psutil.Process(process.pid).children(recursive=True) if "streamlit" in child.cmdline()
    ]
    return child


def _answers_health(process: subprocess.Popen, url: str, err: Path) -> bool:
    assert process.poll() is None, f"the dashboard exited ({process.returncode}): {err.read_text()}"
    try:
        status, _, body = http_get(f"{url}{HEALTH_PATH}")
    except (urllib.error.URLError, ConnectionError):  # not listening yet
        return False
    return status == 200 and body == "ok"


def _ctrl_c_in_a_terminal(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)  # the terminal signals its whole foreground group


def _sigterm_to_the_command_alone(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)  # a supervisor that knows only the command's pid


@pytest.mark.parametrize("stop", [_ctrl_c_in_a_terminal, _sigterm_to_the_command_alone], ids=["ctrl-c", "sigterm"])
def test_dashboard_serves_on_localhost_prints_its_url_and_stops_cleanly(tmp_path, stop):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key not in OUTSIDE_SETTINGS}
    env["DATA_DIR"] = str(tmp_path / "data")  # no snapshot there: the page explains, it is still served
    env["PYTHONPATH"] = str(REPO_ROOT)  # started from another folder, as a user outside the repository would
    argv = [sys.executable, "-m", "include.cli", "dashboard", "--port", str(port)]
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with (
        out_path.open("w") as out,
        err_path.open("w") as err,
        process_group(argv, env, cwd=tmp_path, stdout=out, stderr=err) as process,
    ):
        wait_until(lambda: _answers_health(process, url, err_path), SERVER_START_SECONDS, f"{url}{HEALTH_PATH}")
        status, _, page = http_get(url)
        assert status == 200
        assert '<div id="root">' in page  # Streamlit's page, which then loads the app over its WebSocket
        assert f"dashboard: {url}" in out_path.read_text().splitlines()[0]
        listeners = listening_addresses(psutil.Process(process.pid))
        assert {address for address, _ in listeners} == {"127.0.0.1"}, listeners
        assert ("127.0.0.1", port) in listeners
        # Streamlit runs in the repository, its root first on the path: the app imports its packages there.
        server = _streamlit_child(process)
        assert server.cwd() == str(REPO_ROOT)
        assert server.environ()["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)

        stop(process)
        assert process.wait(60) == 0, err_path.read_text()
        left = tagged(process.tag)  # before the test's own clean-up: what the command left running
    assert left == []
    # Streamlit itself was told to stop (it says so), not killed after the grace period.
    assert "Stopping..." in out_path.read_text() + err_path.read_text()
    assert "did not stop" not in err_path.read_text()
    assert "Traceback" not in err_path.read_text()


# Bad arguments and settings: one line naming the value, nothing started ------------------------------

BAD_DASHBOARD_ARGUMENTS = [
    (["--port", "0"], "--port", "0"),
    (["--port", "65536"], "--port", "65536"),
    (["--port", "-1"], "--port", "-1"),
    (["--port", "abc"], "--port", "abc"),
    (["--port", "80.5"], "--port", "80.5"),
    (["--host", ""], "--host", ""),
    (["--host", "127.0.0.1 "], "--host", "127.0.0.1 "),
]


@pytest.mark.parametrize(
    ("args", "flag", "value"), BAD_DASHBOARD_ARGUMENTS, ids=[" ".join(c[0]) for c in BAD_DASHBOARD_ARGUMENTS]
)
def test_a_bad_dashboard_argument_exits_2_naming_the_value(capsys, args, flag, value):
    assert run_main(["dashboard", *args]) == 2
    err = capsys.readouterr().err
    (error,) = [line for line in err.splitlines() if "error:" in line]
    assert f"argument {flag}: {value!r}" in error, err


def test_a_bad_port_fails_in_a_real_process_without_a_traceback():
    result = run_cli("dashboard", "--port", "70000")
    assert result.returncode == 2
    assert "argument --port: '70000' is out of range" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("host", ["no-such-host.invalid", "10.255.255.1"])  # unknown; not this machine's
def test_a_host_nothing_can_listen_on_is_one_line_naming_it(host):
    result = run_cli("dashboard", "--host", host, "--port", str(free_port()))
    assert_one_line_error(result, 2, f"cannot listen on {host}:")


def test_a_port_in_use_is_one_line_naming_it():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli("dashboard", "--port", str(port))
    assert_one_line_error(result, 2, f"cannot listen on 127.0.0.1:{port}: Address already in use")


# publish and transform: the snapshot the dashboard reads --------------------------------------------


def _loaded_warehouse(data_dir: Path) -> Path:
    """``load --full`` of a small lake into DATA_DIR's warehouse, as a user runs it."""
    from include.lake.store import LocalStore
    from tests.support.trades import fill_lake

    fill_lake(LocalStore(data_dir / "lake"), files=2, per_file=100)
    loaded = run_cli("load", "--full", env={"DATA_DIR": str(data_dir)})
    assert loaded.returncode == 0, loaded.stderr
    return data_dir / "warehouse.duckdb"


def _snapshot_rows(snapshot: Path) -> dict[str, int]:
    with duckdb.connect(str(snapshot), read_only=True) as connection:
        return {name: connection.execute(f'select count(*) from "{name}"').fetchone()[0] for name in SNAPSHOT_TABLES}


def test_transform_publishes_the_snapshot_and_publish_republishes_what_changed(tmp_path):
    warehouse, snapshot = _loaded_warehouse(tmp_path), tmp_path / "dashboard" / "marts.duckdb"
    built = run_cli("transform", env={"DATA_DIR": str(tmp_path)}, timeout=300)
    assert built.returncode == 0, built.stderr
    printed = json.loads(built.stdout.strip().splitlines()[-1])["snapshot"]
    assert printed["path"] == str(snapshot)
    assert printed["rows"] == _snapshot_rows(snapshot)
    assert printed["rows"]["candles_1m"] > 0
    assert_snapshot_equals_warehouse(snapshot, warehouse)

    # The warehouse moves on (a candle rebuilt, an interval emptied); publish copies it again, now.
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(
            "update marts.candles_1m set close = close + 1 where open_time = (select min(open_time) "
            "from marts.candles_1m)"
        )
        connection.execute("delete from marts.candles_5m")
    published = run_cli("publish", env={"DATA_DIR": str(tmp_path)})
    assert published.returncode == 0, published.stderr
    printed = json.loads(published.stdout)
    assert printed["path"] == str(snapshot)
    assert printed["rows"] == _snapshot_rows(snapshot)
    assert printed["rows"]["candles_5m"] == 0
    assert_snapshot_equals_warehouse(snapshot, warehouse)


def test_publish_of_a_warehouse_without_marts_publishes_empty_tables(tmp_path):
    warehouse = _loaded_warehouse(tmp_path)
    published = run_cli("publish", env={"DATA_DIR": str(tmp_path)})
    assert published.returncode == 0, published.stderr
    printed = json.loads(published.stdout)
    assert printed["rows"]["candles_1m"] == 0
    assert printed["rows"]["pipeline"] == 1
    assert_snapshot_equals_warehouse(Path(printed["path"]), warehouse)


def test_publish_of_a_warehouse_never_made_is_one_line_and_makes_none(tmp_path):
    result = run_cli("publish", env={"DATA_DIR": str(tmp_path)})
    assert_one_line_error(result, 1, f"DUCKDB_PATH={str(tmp_path / 'warehouse.duckdb')!r} does not exist")
    assert list(tmp_path.iterdir()) == []


def test_publish_on_snowflake_says_why_there_is_nothing_to_publish(tmp_path):
    result = run_cli("publish", env={"DATA_DIR": str(tmp_path), "WAREHOUSE": "snowflake"})
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["path"] is None
    assert "WAREHOUSE=snowflake" in printed["reason"]
    assert list(tmp_path.iterdir()) == []
