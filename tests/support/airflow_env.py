"""An isolated Airflow for the tests: its own AIRFLOW_HOME, this repo's dags/ and plugins/.

Imported by the conftest of every test folder that touches Airflow, before Airflow itself is
imported, because Airflow reads its configuration once, at import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.paths import REPO_ROOT

# One Airflow home per pytest-xdist worker: each its own SQLite database, none shared between workers.
_HOME_VARIABLE = f"CRYPTOFLOW_TEST_AIRFLOW_HOME_{os.environ.get('PYTEST_XDIST_WORKER', 'main').upper()}"
_INHERITED = os.environ.get(_HOME_VARIABLE)  # a process a test started shares its parent's home
AIRFLOW_HOME = Path(_INHERITED or tempfile.mkdtemp(prefix="cryptoflow-airflow-"))
os.environ[_HOME_VARIABLE] = str(AIRFLOW_HOME)
if not _INHERITED:  # the process that made the home removes it when it ends
    atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)

AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    "AIRFLOW__COSMOS__CACHE_DIR": str(AIRFLOW_HOME / "cosmos"),
    "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",  # as include/up.py says why
}
os.environ.update(AIRFLOW_ENV)
for folder in (REPO_ROOT / "plugins", REPO_ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def airflow_subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for an ``airflow`` command run by a test."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, **AIRFLOW_ENV, "PYTHONPATH": str(REPO_ROOT), "PATH": path, **extra}


_migrated = False


def migrate_db() -> None:
    """Create the test Airflow's SQLite metadata database once per test session."""
    global _migrated
    if not _migrated:
        airflow = Path(sys.executable).with_name("airflow")
        subprocess.run(
            [str(airflow), "db", "migrate"], env=airflow_subprocess_env(), check=True, capture_output=True, timeout=300
        )
        _migrated = True
