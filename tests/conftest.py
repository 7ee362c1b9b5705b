"""Fixtures shared by every test folder: a real sandbox on a real socket, and a real moto S3.

Helpers (plain functions and classes) live in ``tests/support/``; this file declares fixtures, and the
order in which `make test` hands the test files to its workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from include.sandbox.server import RunningSandbox, serve_in_thread
from tests.support.exchange import sandbox_config
from tests.support.moto import MOTO_BUCKET, MotoS3, MotoServer
from tests.support.processes import become_subreaper

# Every temporary file of the session, whoever makes it (pytest's tmp_path, the xdist workers, fakesnow,
# Airflow, Chromium, a process a test kills before it can clean up), goes under one folder that the
# session removes at its end: /tmp is left as the suite found it. TMPDIR is inherited by the workers
# and every process they start; the workers see it set and leave the folder to the controller.
_SESSION_TMP = "CRYPTOFLOW_TEST_TMPDIR"
_session_tmp_key = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(_SESSION_TMP):
        return
    folder = tempfile.mkdtemp(prefix="cryptoflow-tests-")
    os.environ[_SESSION_TMP] = os.environ["TMPDIR"] = tempfile.tempdir = folder
    config.stash[_session_tmp_key] = Path(folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_session_tmp_key, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _orphans_come_back_to_the_test_process() -> None:
    """Whatever a test's processes leave behind is re-parented here, where process_group ends it."""
    become_subreaper()


@pytest.fixture
def start_sandbox() -> Callable[..., AbstractContextManager[RunningSandbox]]:
    """``with start_sandbox(rate=50, ...) as sandbox:`` serves a sandbox for the block."""
    return lambda **overrides: serve_in_thread(sandbox_config(**overrides))


@pytest.fixture(scope="module")
def history_sandbox() -> Iterator[RunningSandbox]:
    """A sandbox with two hours of synthetic history at 2 trades/s, shared by a test module."""
    with serve_in_thread(sandbox_config(rate=2.0, history_seconds=2 * 3600)) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto_server process for the test session (restarted by tests that simulate an outage)."""
    server = MotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials and no shared config files: nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def moto_s3(moto_server: MotoServer, aws_test_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    """An empty bucket ``lake`` on the moto server; AWS_ENDPOINT_URL points at it, so
    ``open_lake(moto_s3.url("prefix"))`` works as in production. ``moto_s3.stop()`` / ``.start()``
    take S3 away and bring it back on the same port."""
    moto_server.start()  # a previous test may have left it stopped
    moto_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    s3 = MotoS3(moto_server, MOTO_BUCKET)
    s3.create_bucket()
    yield s3
    moto_server.start()


# The files whose tests run longest (whole Airflow deployments, dbt builds, the benchmarks' smoke),
# longest first. `make test` hands whole files to two xdist workers in collection order: starting
# these first lets the short files fill in behind them, so the two workers finish together.
LONGEST_FIRST = (
    "tests/test_faults_e2e.py",
    "tests/test_topology.py",
    "tests/bench/test_live_edge_smoke.py",
    "tests/dags/test_repair_gaps_dag.py",
    "tests/warehouse/test_warehouse_dag.py",
    "tests/warehouse/test_duckdb_faults.py",
    "tests/dashboard/test_browser.py",
    "tests/dashboard/test_reads_under_load.py",
    "tests/dbt/",
    "tests/bench/",
    "tests/dags/",
    "tests/test_up.py",
    "tests/test_cli.py",
    "tests/ingest/test_stream_resilience.py",
    "tests/warehouse/test_snapshot.py",
    "tests/dashboard/test_app.py",
)


def _start_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return next((rank for rank, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_start_rank)  # stable: within a rank, files and tests keep their order
