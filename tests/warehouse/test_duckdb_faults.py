"""A crash or a kill at ANY statement of a multi-batch DuckDB load: the re-run holds exactly the lake.

The scenario is a warehouse that already loaded part of the lake, then an incremental load (through
the discovery cursor) of 12 new announced files in transactions of 1,000 rows, so the load spans six
commits plus the cursor's. The load fails at statement N: an exception, for every N; a killed
process, for each kind of statement at the first, a middle and the last batch. The same file is then
opened again and loaded, and the warehouse must equal the lake: no row lost, none twice.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from include.lake.store import LocalStore
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake
from tests.support.paths import REPO_ROOT
from tests.support.processes import run_to_end
from tests.support.trades import announce_new_files, fill_lake
from tests.support.warehouse import Crash, FaultyConnection, assert_exactly_the_lake

BATCH_ROWS = 1000  # the new files hold 500 rows each: a commit every two files


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """A lake, a warehouse file that loaded its first part, and the statements of the next load."""
    work = tmp_path_factory.mktemp("faults")
    lake = LocalStore(work / "lake")
    fill_lake(lake, files=2)
    baseline = work / "baseline.duckdb"
    with DuckDBWarehouse(baseline, batch_rows=BATCH_ROWS) as warehouse:
        assert load_lake(lake, warehouse).rows_loaded == 2000
    announce_new_files(lake, "stream-faults")
    clean = work / "clean.duckdb"
    shutil.copy(baseline, clean)
    with DuckDBWarehouse(clean, batch_rows=BATCH_ROWS) as warehouse:
        warehouse.connection = recorder = FaultyConnection(warehouse.connection)
        result = load_lake(lake, warehouse)
    assert (result.files_loaded, result.rows_loaded, result.partitions_listed) == (12, 6000, 6)
    assert_exactly_the_lake(lake, clean)
    commits = [sql for sql in recorder.statements if sql.strip() == "commit"]
    assert len(commits) >= 7, "the load must span several batches (six) and the cursor's commit"
    return lake, baseline, recorder.statements


def reload_and_check(lake, path):
    """A fresh process's view: open the file again, load, and compare with the lake."""
    with DuckDBWarehouse(path, batch_rows=BATCH_ROWS) as warehouse:
        load_lake(lake, warehouse)
    assert_exactly_the_lake(lake, path)


def test_a_crash_at_any_statement_of_a_load_is_repaired_by_the_next_load(scenario, tmp_path):
    lake, baseline, statements = scenario
    for n in range(1, len(statements) + 1):
        path = tmp_path / f"crash-{n}.duckdb"
        shutil.copy(baseline, path)
        with DuckDBWarehouse(path, batch_rows=BATCH_ROWS) as warehouse:
            warehouse.connection = FaultyConnection(warehouse.connection, fail_at=n)
            with pytest.raises(Crash):
                load_lake(lake, warehouse)
        reload_and_check(lake, path)


def kill_at(lake_root: Path, path: Path, n: int) -> subprocess.CompletedProcess:
    """Run the load in a process that SIGKILLs itself in place of its ``n``-th statement."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from include.lake.store import LocalStore\n"
        "from include.warehouse.duckdb_backend import DuckDBWarehouse\n"
        "from include.warehouse.load import load_lake\n"
        "from tests.support.warehouse import FaultyConnection\n"
        "lake, path, n = LocalStore(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3])\n"
        "warehouse = DuckDBWarehouse(path, batch_rows=int(sys.argv[4]))\n"
        "kill = lambda: os.kill(os.getpid(), signal.SIGKILL)\n"
        "warehouse.connection = FaultyConnection(warehouse.connection, fail_at=n, on_fault=kill)\n"
        "load_lake(lake, warehouse)\n"
    )
    argv = [sys.executable, "-c", script, str(lake_root), str(path), str(n), str(BATCH_ROWS)]
    return run_to_end(argv, {**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=300, cwd=REPO_ROOT)


def kill_points(statements: list[str]) -> list[int]:
    """Every statement up to the second batch's commit, and from the last batch's commit on.

    A process start costs seconds, so not all of them: these cover each kind of statement at the
    first batch, a middle one, the last one and the cursor's transaction (in-process, every one).
    """
    commits = [n for n, sql in enumerate(statements, 1) if sql.strip() == "commit"]
    return [*range(1, commits[1] + 1), *range(commits[-2], len(statements) + 1)]


# A process start and a reload per kill point: 9 minutes on a machine shared with other test runs
# (load 12 on 2 cores), where the default 300 s timeout cut it off.
@pytest.mark.timeout(1200)
def test_a_load_process_killed_at_each_kind_of_statement_is_repaired_by_the_next_load(scenario, tmp_path):
    lake, baseline, statements = scenario
    for n in kill_points(statements):
        path = tmp_path / f"kill-{n}.duckdb"
        shutil.copy(baseline, path)
        killed = kill_at(lake.root, path, n)
        assert killed.returncode == -signal.SIGKILL, (n, killed.stderr[-2000:])
        reload_and_check(lake, path)
