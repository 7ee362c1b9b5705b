"""The lake into DuckDB exactly once: every file once, every row exact, nothing half-loaded."""

import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.lake.markers import mark_written
from include.lake.store import LocalStore, open_lake
from include.lake.trades import parquet_bytes, write_trades
from include.timeutil import HOUR_US
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.load import load_lake
from tests.support.paths import REPO_ROOT
from tests.support.processes import run_to_end
from tests.support.trades import START_US, columns, fill_lake
from tests.support.warehouse import assert_exactly_the_lake, ledger, loaded_at_of_each_file, warehouse_rows


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_every_file_loads_exactly_once_with_exact_values(backend, tmp_path, request):
    if backend == "s3":
        lake = open_lake(request.getfixturevalue("moto_s3").url("lake"))
    else:
        lake = LocalStore(tmp_path / "lake")
    fill_lake(lake)
    path = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(path) as warehouse:
        first = load_lake(lake, warehouse)
        assert (first.files_loaded, first.rows_loaded, first.refused) == (12, 6000, [])
        again = load_lake(lake, warehouse)
        assert (again.files_loaded, again.rows_loaded) == (0, 0)
        keys = write_trades(lake, columns("BTCUSDT", 50_000, 10, START_US + HOUR_US), "backfill", START_US)
        mark_written(lake, "repair-test", keys)
        new = load_lake(lake, warehouse)
        assert (new.files_loaded, new.rows_loaded) == (1, 10)
        assert (new.files_listed, new.partitions_listed) == (1, 1)  # only the partition the marker names
    assert_exactly_the_lake(lake, path)


@pytest.mark.parametrize("batch_rows", [1, 499, 500, 1000, 1001, 5999, 6000])
def test_a_load_spanning_many_batches_loads_each_row_once(tmp_path, batch_rows):
    lake = LocalStore(tmp_path / "lake")
    fill_lake(lake)  # 12 files of 500 rows
    path = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(path, batch_rows=batch_rows) as warehouse:
        result = load_lake(lake, warehouse)
        assert (result.files_loaded, result.rows_loaded) == (12, 6000)
        assert load_lake(lake, warehouse, full=True).rows_loaded == 0
    assert_exactly_the_lake(lake, path)


def test_a_thousand_small_files_load_in_one_run(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    for n in range(1000):
        write_trades(lake, columns("BTCUSDT", 1 + n * 3, 3, START_US + n * 3_000_000), "stream", START_US)
    path = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(path) as warehouse:
        result = load_lake(lake, warehouse)
    assert (result.files_loaded, result.rows_loaded) == (1000, 3000)
    assert sorted(row[1] for row in warehouse_rows(path)) == list(range(1, 3001))


def first_key(lake) -> str:
    return next(info.key for info in lake.list("trades/") if "stream-9" not in info.key)


def test_corrupt_and_foreign_files_are_refused_by_name_and_the_rest_load(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    fill_lake(lake, files=2)
    corrupt = "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=08/stream-900-901.parquet"
    foreign = "trades/exchange=binance/symbol=BTCUSDT/date=2026-11-24/hour=08/stream-902-903.parquet"
    lake.put(corrupt, b"PAR1 this is not parquet")
    lake.put(foreign, parquet_bytes(pa.table({"id": [1, 2], "price": [1.5, 2.5]})))
    path = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(path) as warehouse:
        result = load_lake(lake, warehouse)
        assert result.rows_loaded == 2000
        assert len(result.refused) == 2
        assert any(corrupt in reason and "not readable Parquet" in reason for reason in result.refused)
        assert any(foreign in reason and "schema" in reason for reason in result.refused)
        # A refusal is reported once, not on every run, even when the whole lake is listed again.
        assert load_lake(lake, warehouse, full=True).refused == []
        # Replaced by a good file (a new ETag) and announced, it loads.
        good = parquet_bytes(
            pa.Table.from_batches(pq.read_table(pa.BufferReader(lake.get(first_key(lake)))).to_batches())
        )
        lake.put(corrupt, good)
        mark_written(lake, "repair-fix", [corrupt])
        fixed = load_lake(lake, warehouse)
        assert (fixed.files_loaded, fixed.refused) == (1, [])
    assert corrupt in ledger(path)
    assert foreign not in ledger(path)


def test_the_load_command_reports_files_rows_and_refusals(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    fill_lake(lake, files=2)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "LAKE_URL": f"file://{tmp_path / 'lake'}",
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
    }
    command = [sys.executable, "-m", "include.cli", "load"]
    first = run_to_end(command, env, timeout=120, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1]) == {"files": 4, "rows": 2000, "refused": []}
    second = run_to_end(command, env, timeout=120, cwd=tmp_path)
    assert json.loads(second.stdout.splitlines()[-1]) == {"files": 0, "rows": 0, "refused": []}
    wrong = run_to_end(command, {**env, "WAREHOUSE": "oracle"}, timeout=120, cwd=tmp_path)
    assert wrong.returncode == 2
    assert "WAREHOUSE='oracle'" in wrong.stderr


def test_every_row_of_a_commit_carries_the_commits_loaded_at(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    fill_lake(lake)  # 12 files of 500 rows: commits of 2 files at batch_rows=1000
    with DuckDBWarehouse(tmp_path / "w.duckdb", batch_rows=1000) as warehouse:
        load_lake(lake, warehouse)
        ledger_stamps = dict(warehouse.execute("select file_key, loaded_at from raw.load_ledger"))
        stamps = loaded_at_of_each_file(lake, warehouse.execute)
        # Each file's rows carry exactly its ledger row's loaded_at: the commit's one instant.
        assert stamps == {key: {stamp} for key, stamp in ledger_stamps.items()}
        assert len(set(ledger_stamps.values())) == 6
        assert all(stamp.utcoffset() is not None for stamp in ledger_stamps.values()), "an instant, with its zone"
        first_max = max(ledger_stamps.values())
        keys = write_trades(lake, columns("BTCUSDT", 50_000, 10, START_US), "backfill", START_US)
        mark_written(lake, "repair-test", keys)
        load_lake(lake, warehouse)
        # A later load's rows are later: what staging reads incrementally.
        (later,) = loaded_at_of_each_file(lake, warehouse.execute)[keys[0]]
        assert later > first_max
