"""The dashboard's snapshot (include/warehouse/snapshot.py) over a real DuckDB warehouse: trades loaded
from a lake with heartbeats and a completeness window, the candle marts built by dbt, audit rows.

What it promises: the snapshot is the warehouse's tables exactly (decimals stay DECIMAL); a reader
holding the old snapshot neither blocks a publish nor sees it change; a failed publish leaves the
published file as it was and no temporary file behind; on Snowflake nothing is published."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from include.alerts.model import FIRED, MARKET, PIPELINE, Alert, alert_id
from include.alerts.store import Pending, ensure_alert_tables, record_deliveries, store_alerts, warehouse_now
from include.config import load_settings
from include.lake.store import open_lake
from include.lake.trades import write_trades
from include.warehouse import snapshot
from include.warehouse.audit import ensure_audit_table
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.shared import DUCKDB
from include.warehouse.snapshot import (
    ALERT_DELIVERIES_COLUMNS,
    ALERTS_COLUMNS,
    AUDIT_COLUMNS,
    CANDLE_TABLE_COLUMNS,
    COPIED_TABLES,
    create_table_sql,
    publish_into,
    publish_snapshot,
)
from tests.support.candles import build, load, query
from tests.support.dashboard import assert_snapshot_equals_warehouse
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_group, run_to_end
from tests.support.trades import START_US, columns
from tests.support.waiting import wait_until
from tests.support.warehouse import Crash, write_gap_fill, write_heartbeats, write_window

HOUR_8 = datetime(2026, 11, 24, 8, tzinfo=UTC)
CONNECTION = {"state": "open", "connection": 1, "since": "2026-11-24T08:00:00+00:00"}
DEADLINE = 60.0


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A warehouse with trades of two symbols over two hours, status tables (a gap fill among them) and the
    candle marts; no audit yet."""
    folder = tmp_path_factory.mktemp("built")
    lake = open_lake(f"file://{folder / 'lake'}")
    write_trades(lake, columns("BTCUSDT", 1, 7200), "stream", START_US)
    write_trades(lake, columns("ETHUSDT", 50_000, 3000), "backfill", START_US)
    write_heartbeats(lake, {"BTCUSDT": (7200, START_US + 7199 * 1_000_000), "ETHUSDT": None}, CONNECTION)
    write_window(lake, "BTCUSDT", HOUR_8, filled=2, holes=(104,))
    write_gap_fill(lake, "ETHUSDT", 51_000, 51_009, holes=(51_004,))
    path = folder / "warehouse.duckdb"
    load(lake, path)
    build(path, folder / "dbt")
    return path


def store_some_alerts(execute) -> None:
    """A market alert delivered by the webhook and failing by e-mail, and an open pipeline incident."""
    ensure_alert_tables(execute, DUCKDB)
    now = warehouse_now(execute)
    market = Alert(
        alert_id=alert_id("market", "test"),
        kind=MARKET,
        rule_id="btc-100k",
        subject="BTCUSDT 1m",
        message="btc-100k: close 100000.10000000",
        event_time=HOUR_8,
        symbol="BTCUSDT",
        interval="1m",
        open_time=HOUR_8,
        value=Decimal("100000.10000000"),
    )
    incident = Alert(alert_id("stale", "ETHUSDT"), PIPELINE, "stale_symbol", "ETHUSDT", "ETHUSDT is stale", HOUR_8)
    stored = store_alerts(execute, DUCKDB, [market, incident], now)
    webhook = Pending(stored[0], "webhook", FIRED, 0)
    email = Pending(stored[0], "email", FIRED, 2)
    record_deliveries(execute, DUCKDB, [(webhook, None), (email, "connection refused")], now)


def warehouse_copy(built: Path, folder: Path, audited: bool = True) -> Path:
    """A copy of ``built`` to change freely; ``audited``: with audit rows, a mismatch among them, and
    alerts with their deliveries."""
    path = folder / "warehouse.duckdb"
    shutil.copyfile(built, path)
    if audited:
        with DuckDBWarehouse(path) as warehouse:
            store_some_alerts(warehouse.execute)
            ensure_audit_table(warehouse.execute, DUCKDB)
            warehouse.execute(
                "insert into marts.candle_audit select symbol, '1m', open_time, "
                "case when row_number() over (order by symbol, open_time) = 3 then 'mismatch' else 'match' end, "
                "case when row_number() over (order by symbol, open_time) = 3 then 'high: 1 != 2' else '' end, "
                "now() from marts.candles_1m where is_closed"
            )
    return path


def settings_for(warehouse: Path, published: Path, kind: str = "duckdb"):
    return load_settings({"WAREHOUSE": kind, "DUCKDB_PATH": str(warehouse), "DASHBOARD_SNAPSHOT": str(published)})


def contents(path: Path) -> dict[str, list[tuple]]:
    """Every snapshot table's rows, sorted, but the pipeline row (its publish time differs each time)."""
    with duckdb.connect(str(path), read_only=True) as connection:
        return {
            name: sorted(connection.execute(f"select * from {name}").fetchall(), key=repr) for name in COPIED_TABLES
        }


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith((".tmp", ".wal")))


def test_the_snapshot_is_the_warehouse_exactly_decimals_as_decimals(built, tmp_path):
    warehouse = warehouse_copy(built, tmp_path)
    published = tmp_path / "dashboard" / "marts.duckdb"
    info = publish_snapshot(settings_for(warehouse, published))
    assert info.path == published
    assert info.reason == ""
    assert_snapshot_equals_warehouse(published, warehouse)
    # Not an equality of empty tables: every table the dashboard reads has rows.
    assert all(info.rows[name] > 0 for name in (*COPIED_TABLES, "pipeline")), info.rows
    assert info.rows["candles_1m"] == query(warehouse, "select count(*) from marts.candles_1m")[0][0]
    types = dict(
        query(published, "select column_name, data_type from duckdb_columns() where table_name = 'candles_1m'")
    )
    assert (types["open"], types["quote_volume"]) == ("DECIMAL(38,8)", "DECIMAL(38,16)"), types
    # The marts dbt builds have the contract's columns (snapshot.CANDLE_TABLE_COLUMNS), in its order and types.
    with duckdb.connect(":memory:") as contract:
        contract.execute(create_table_sql("contract", CANDLE_TABLE_COLUMNS))
        expected = contract.execute(
            "select column_name, data_type from duckdb_columns() where table_name = 'contract' order by column_index"
        ).fetchall()
    for interval in ("1m", "5m", "15m", "1h", "4h", "1d"):
        columns = query(
            warehouse,
            "select column_name, data_type from duckdb_columns() "
            f"where schema_name = 'marts' and table_name = 'candles_{interval}' order by column_index",
        )
        assert columns == expected, interval
    ((close, quote_volume),) = query(
        published, "select close, quote_volume from candles_1m where symbol = 'BTCUSDT' order by open_time limit 1"
    )
    assert isinstance(close, Decimal)
    assert isinstance(quote_volume, Decimal)
    assert (close, quote_volume) == query(
        warehouse,
        "select close, quote_volume from marts.candles_1m where symbol = 'BTCUSDT' order by open_time limit 1",
    )[0]
    assert ("mismatch", "high: 1 != 2") in query(published, "select status, differences from candle_audit")
    # The alerts and their outbox, values as the exact text stored.
    assert ("btc-100k", "100000.10000000") in query(published, "select rule_id, value from alerts")
    assert sorted(query(published, "select channel, attempts, last_error from alert_deliveries")) == [
        ("email", 3, "connection refused"),
        ("webhook", 1, None),
    ]


def test_a_warehouse_without_the_audit_or_the_marts_gives_their_tables_empty_with_their_columns(built, tmp_path):
    not_audited = warehouse_copy(built, tmp_path, audited=False)
    assert not query(not_audited, "select * from duckdb_tables() where table_name = 'candle_audit'")
    published = tmp_path / "dashboard" / "marts.duckdb"
    publish_snapshot(settings_for(not_audited, published))
    assert_snapshot_equals_warehouse(published, not_audited)
    audit = query(published, "select column_name, data_type from duckdb_columns() where table_name = 'candle_audit'")
    assert [name for name, _ in audit] == [name for name, _ in AUDIT_COLUMNS]
    assert query(published, "select count(*) from candle_audit") == [(0,)]
    # No alert evaluated yet: the alerts' tables empty, with the columns and types the alerts code creates.
    with duckdb.connect(":memory:") as alerting:
        ensure_alert_tables(lambda sql, params=None: alerting.execute(sql, params).fetchall(), DUCKDB)
        for table, declared in (("alerts", ALERTS_COLUMNS), ("alert_deliveries", ALERT_DELIVERIES_COLUMNS)):
            sql = "select column_name, data_type from duckdb_columns() where table_name = ? order by column_index"
            created = alerting.execute(sql, [table]).fetchall()
            assert query(published, sql.replace("?", f"'{table}'")) == created, table
            assert [name for name, _ in created] == [name for name, _ in declared], table
            assert query(published, f"select count(*) from {table}") == [(0,)]

    fresh = tmp_path / "fresh.duckdb"  # migrated by its first open: raw tables, no marts
    with DuckDBWarehouse(fresh):
        pass
    publish_snapshot(settings_for(fresh, published))
    assert_snapshot_equals_warehouse(published, fresh)
    candles = query(published, "select column_name, data_type from duckdb_columns() where table_name = 'candles_1d'")
    assert [name for name, _ in candles] == [name for name, _ in CANDLE_TABLE_COLUMNS]
    assert dict(candles)["close"] == "DECIMAL(38,8)"
    assert query(published, "select count(*), max(marts_loaded_at) from pipeline") == [(1, None)]


# A reader in its own process (DuckDB's file locks are per process): it opens the snapshot read-only,
# starts reading the 1-minute candles, says so, and waits to be told; then it reads the rest of them
# and every table whole, most of them for the first time (from the file, not from its cache).
READER = """
import json, sys, time
from pathlib import Path
import duckdb
snapshot, folder, tables = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
def text(rows):
    return [[str(value) for value in row] for row in rows]
connection = duckdb.connect(snapshot, read_only=True)
cursor = connection.execute("select * from candles_1m order by symbol, open_time")
streamed = cursor.fetchmany(5)
(folder / "opened").write_text("")
deadline = time.monotonic() + 60
while not (folder / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
streamed += cursor.fetchall()
whole = {name: sorted(text(connection.execute(f"select * from {name}").fetchall())) for name in tables}
(folder / "read.json").write_text(json.dumps({"streamed": text(streamed), "tables": whole}))
"""


def as_text(rows: list[tuple]) -> list[list[str]]:
    return [[str(value) for value in row] for row in rows]


def test_a_reader_of_the_old_snapshot_never_blocks_a_publish_and_reads_the_old_one_whole(built, tmp_path):
    warehouse = warehouse_copy(built, tmp_path)
    published = tmp_path / "dashboard" / "marts.duckdb"
    settings = settings_for(warehouse, published)
    publish_snapshot(settings)
    old = tmp_path / "old.duckdb"
    shutil.copyfile(published, old)
    with DuckDBWarehouse(warehouse) as changed:  # the next transform: every price moves, the audit grows
        changed.execute("update marts.candles_1m set close = close + 1, high = high + 1")
        changed.execute("insert into marts.candle_audit select * from marts.candle_audit")
    argv = [sys.executable, "-c", READER, str(published), str(tmp_path), json.dumps(list(COPIED_TABLES))]
    with process_group(argv, cwd=REPO_ROOT) as reader:
        wait_until(lambda: (tmp_path / "opened").exists() or reader.poll() is not None, DEADLINE, "the reader")
        assert reader.poll() is None, "the reader ended before it had read"
        # Its read-only connection and its open query hold the snapshot: the publish must not wait on them.
        info = publish_snapshot(settings)
        (tmp_path / "go").write_text("")
        assert reader.wait(DEADLINE) == 0
    read = json.loads((tmp_path / "read.json").read_text())
    # The old snapshot, whole and unchanged, for the query under way and for the ones after the publish.
    assert read["streamed"] == as_text(query(old, "select * from candles_1m order by symbol, open_time"))
    assert read["tables"] == {name: sorted(as_text(rows)) for name, rows in contents(old).items()}
    assert info.rows["candle_audit"] == 2 * len(read["tables"]["candle_audit"])
    assert_snapshot_equals_warehouse(published, warehouse)  # a reader opening it now gets the new one


def dead_pid() -> int:
    """The id of a process that has ended (a crashed writer's)."""
    return int(run_to_end([sys.executable, "-c", "import os; print(os.getpid())"]).stdout)


def test_leftovers_of_dead_writers_are_removed_and_those_of_running_writers_kept(built, tmp_path):
    warehouse = warehouse_copy(built, tmp_path, audited=False)
    published = tmp_path / "dashboard" / "marts.duckdb"
    published.parent.mkdir()
    dead = f".marts.duckdb.{dead_pid()}.{'a' * 32}.tmp"
    argv = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    with process_group(argv, stdin=subprocess.PIPE) as running:
        live = f".marts.duckdb.{running.pid}.{'b' * 32}.tmp"
        unrelated = ".marts.duckdb.notes.tmp"  # not a name a publish makes: not ours to remove
        for name in (dead, dead + ".wal", live, live + ".wal", unrelated):
            (published.parent / name).write_bytes(b"half a database")
        publish_snapshot(settings_for(warehouse, published))
        assert leftovers(published.parent) == sorted([live, live + ".wal", unrelated])
        running.stdin.close()
    assert_snapshot_equals_warehouse(published, warehouse)


def failing_at_the_third_copy(execute):
    """``execute``, but creating the snapshot's third table (``candles_15m``) fails, as a full disk would:
    two tables are in the temporary file, the replace is not reached."""

    def failing(sql: str, params=None):
        if sql.startswith("create table") and '"candles_15m"' in sql:
            raise Crash(f"no space left on the device: {sql}")
        return execute(sql, params)

    return failing


def failing_fsync(path: Path) -> None:
    raise OSError(5, "Input/output error", str(path))


@pytest.mark.parametrize("fault", ["copy", "fsync"])
def test_a_publish_that_fails_before_the_replace_leaves_the_published_snapshot_as_it_was(
    built, tmp_path, monkeypatch, fault
):
    warehouse = warehouse_copy(built, tmp_path)
    published = tmp_path / "dashboard" / "marts.duckdb"
    publish_snapshot(settings_for(warehouse, published))
    before, old = digest(published), contents(published)
    with DuckDBWarehouse(warehouse) as changed:
        changed.execute("update marts.candles_1m set close = close + 1")
        if fault == "copy":
            with pytest.raises(Crash, match="candles_15m"):
                publish_into(failing_at_the_third_copy(changed.execute), published, "sandbox")
        else:  # the file is written whole; flushing it to disk fails
            monkeypatch.setattr(snapshot, "fsync_dir", failing_fsync)
            with pytest.raises(OSError, match="Input/output error"):
                publish_into(changed.execute, published, "sandbox")
    assert digest(published) == before
    assert contents(published) == old
    assert leftovers(published.parent) == []


def test_on_snowflake_nothing_is_published_and_the_reason_says_why(tmp_path):
    published = tmp_path / "dashboard" / "marts.duckdb"
    warehouse = tmp_path / "warehouse.duckdb"
    info = publish_snapshot(settings_for(warehouse, published, kind="snowflake"))
    assert (info.path, info.rows, info.published_at) == (None, {}, None)
    assert "WAREHOUSE=snowflake" in info.reason
    assert "reader role" in info.reason
    assert not published.parent.exists()
    assert not warehouse.exists()
