"""``python -m include.pools``, which the compose deployment's airflow-init runs (make up's e2e test
runs the same ``set_commands`` against a real Airflow)."""

import subprocess
import sys

from tests.support.paths import REPO_ROOT


def test_without_an_airflow_command_it_stops_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "include.pools"],
        cwd=REPO_ROOT,
        env={"PATH": str(tmp_path)},  # a folder with no airflow in it
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == "error: no airflow command on PATH to create the pools with\n"
