"""The lake into DuckDB exactly once: every file once, every row exact, nothing half-loaded."""

import json
import os
import subprocess
import sys
from decimal import Decimal

import duckdb
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
from tests.support.trades import START_US, columns, fill_lake, lake_rows


def warehouse_rows(path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(
            "select symbol, trade_id, price, quantity, quote_quantity, trade_time, is_buyer_maker, source "
            "from raw.trades"
        ).fetchall()


def ledger(path) -> dict[str, tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return {
            key: (size, etag, count)
            for key, size, etag, count in connection.execute(
                "select file_key, size, etag, row_count from raw.load_ledger"
            ).fetchall()
        }


def assert_exactly_the_lake(lake, path) -> None:
    rows = warehouse_rows(path)
    assert len(rows) == len(set(rows)), "a row was loaded twice"
    assert set(rows) == lake_rows(lake)
    assert all(isinstance(row[2], Decimal) for row in rows), "prices must be exact decimals"
    files = {info.key: info for info in lake.list("trades/")}
    assert set(ledger(path)) == set(files)
    for key, (size, etag, count) in ledger(path).items():
        assert (size, etag) == (files[key].size, files[key].etag)
        assert count == len(pq.read_table(pa.BufferReader(lake.get(key))))


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


class FailingConnection:
    """A DuckDB connection (whose methods cannot be patched) that fails on one statement."""

    def __init__(self, real, fails_on):
        self.real, self.fails_on = real, fails_on

    def execute(self, sql, *args):
        if self.fails_on(sql):
            raise RuntimeError("power cut after the rows were inserted")
        return self.real.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_crash_between_reading_and_committing_loses_and_duplicates_nothing(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    fill_lake(lake)
    path = tmp_path / "warehouse.duckdb"
    with DuckDBWarehouse(path) as warehouse:
        warehouse.connection = FailingConnection(
            warehouse.connection,
            lambda sql: "raw.load_ledger" in sql and sql.lstrip().startswith("insert"),
        )
        with pytest.raises(RuntimeError, match="power cut"):
            load_lake(lake, warehouse)
    assert warehouse_rows(path) == []
    assert ledger(path) == {}
    with DuckDBWarehouse(path) as warehouse:
        assert load_lake(lake, warehouse).rows_loaded == 6000
    assert_exactly_the_lake(lake, path)


def test_a_killed_load_process_leaves_nothing_half_loaded(tmp_path):
    lake = LocalStore(tmp_path / "lake")
    fill_lake(lake)
    path = tmp_path / "warehouse.duckdb"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from include.lake.store import LocalStore\n"
        "from include.warehouse.duckdb_backend import DuckDBWarehouse\n"
        "from include.warehouse.load import load_lake\n"
        "w = DuckDBWarehouse(Path(sys.argv[2]))\n"
        "class Dying:\n"
        "    def __init__(self, real): self.real = real\n"
        "    def execute(self, sql, *a):\n"
        "        if sql.strip() == 'commit':\n"
        "            os._exit(9)  # killed after every insert, before the commit\n"
        "        return self.real.execute(sql, *a)\n"
        "    def __getattr__(self, name): return getattr(self.real, name)\n"
        "w.connection = Dying(w.connection)\n"
        "load_lake(LocalStore(Path(sys.argv[1])), w)\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "lake"), str(path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert killed.returncode == 9
    assert warehouse_rows(path) == []
    with DuckDBWarehouse(path) as warehouse:
        assert load_lake(lake, warehouse).rows_loaded == 6000
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
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1]) == {"files": 4, "rows": 2000, "refused": []}
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(second.stdout.splitlines()[-1]) == {"files": 0, "rows": 0, "refused": []}
    wrong = subprocess.run(
        command, cwd=tmp_path, env={**env, "WAREHOUSE": "oracle"}, capture_output=True, text=True, timeout=120
    )
    assert wrong.returncode == 2
    assert "WAREHOUSE='oracle'" in wrong.stderr
