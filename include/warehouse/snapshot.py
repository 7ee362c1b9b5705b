"""The dashboard's read-only snapshot of the DuckDB warehouse, published atomically after each transform.

Why: DuckDB lets one process write a database file, and a read-only connection to it fails ("Could
not set lock on file") whenever a load holds the write lock, which under ``make up`` is every few
seconds (12 failures in 20 tries, measured). So the dashboard never opens ``warehouse.duckdb``:
the writer copies what the dashboard reads into a file of its own and replaces the published one.

How: the writer's connection (the caller holds the writer slot, the ``warehouse_writer`` pool in
Airflow) ATTACHes a new file named for this writer alone (pid and a random id) next to the
target, copies the tables below into it (``CREATE TABLE AS``: DECIMAL stays DECIMAL), DETACHes
it (DuckDB checkpoints on detach: no ``.wal`` is left), fsyncs it and ``os.replace``s it onto
the published path, then fsyncs the folder. A reader that opened the old file keeps reading its
inode, whole and unchanged; a reader opening the path afterwards gets the new file. The writer
never opens the published file, so no reader's lock can ever hold it up, and a reader never opens
the warehouse. A crash before the replace leaves the previous snapshot as it was; its temporary
file is removed by the next publish (files of writers no longer running).

Snowflake needs none of this: the dashboard reads the marts there through ``st.connection`` with
the read-only role (setup V003, V007, V009), so ``publish_snapshot`` does nothing and says so.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from include.candles import CANDLE_COLUMNS, INTERVALS
from include.config import Settings
from include.lake.spool import fsync_dir
from include.warehouse.duckdb_backend import DuckDBWarehouse
from include.warehouse.shared import DUCKDB, Execute
from include.warehouse.sql import in_transaction

log = logging.getLogger(__name__)

_TZ = "timestamptz"
# The candle marts' columns (include/candles.py), as the snapshot's tables declare them.
CANDLE_TABLE_COLUMNS = tuple((column.name, column.sql_type) for column in CANDLE_COLUMNS)
STREAM_STATUS_COLUMNS = (
    ("exchange", "varchar"),
    ("symbol", "varchar"),
    ("updated_at", _TZ),
    ("last_trade_id", "bigint"),
    ("last_trade_time", _TZ),
    ("lag_seconds", "double"),
    ("connection", "varchar"),
    ("loaded_at", _TZ),
)
COMPLETENESS_COLUMNS = (
    ("exchange", "varchar"),
    ("symbol", "varchar"),
    ("window_start", _TZ),
    ("window_end", _TZ),
    ("expected", "bigint"),
    ("present_before", "bigint"),
    ("filled", "bigint"),
    ("holes", "varchar"),
    ("hole_count", "bigint"),
    ("refused_count", "bigint"),
    ("missing", "bigint"),
    ("checked_at", _TZ),
    ("loaded_at", _TZ),
    ("first_id", "bigint"),  # the window's expected ids are [first_id, end_id) (setup V006: added last)
    ("end_id", "bigint"),
)
GAP_FILLS_COLUMNS = (
    ("exchange", "varchar"),
    ("symbol", "varchar"),
    ("first_id", "bigint"),
    ("last_id", "bigint"),
    ("since", _TZ),
    ("filled", "bigint"),
    ("holes", "varchar"),
    ("hole_count", "bigint"),
    ("missing", "bigint"),
    ("checked_at", _TZ),
    ("loaded_at", _TZ),
)
AUDIT_COLUMNS = (
    ("symbol", "varchar"),
    ("interval", "varchar"),
    ("open_time", _TZ),
    ("status", "varchar"),
    ("differences", "varchar"),
    ("audited_at", _TZ),
)
# The alerts' tables as include/alerts/store.py ``ensure_alert_tables`` creates them (values as exact text).
ALERTS_COLUMNS = (
    ("alert_id", "varchar"),
    ("kind", "varchar"),
    ("rule_id", "varchar"),
    ("subject", "varchar"),
    ("message", "varchar"),
    ("event_time", _TZ),
    ("symbol", "varchar"),
    ("interval", "varchar"),
    ("open_time", _TZ),
    ("value", "varchar"),
    ("fired_at", _TZ),
    ("resolved_at", _TZ),
)
ALERT_DELIVERIES_COLUMNS = (
    ("alert_id", "varchar"),
    ("channel", "varchar"),
    ("event", "varchar"),
    ("attempts", "bigint"),
    ("delivered_at", _TZ),
    ("last_error", "varchar"),
    ("last_attempt_at", _TZ),
)
PIPELINE_COLUMNS = (
    ("exchange", "varchar"),
    ("published_at", _TZ),
    ("last_load_at", _TZ),
    ("marts_loaded_at", _TZ),
)
# Snapshot table -> (warehouse schema, warehouse table, columns when the warehouse has no such table).
COPIED_TABLES: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    **{interval.mart: ("marts", interval.mart, CANDLE_TABLE_COLUMNS) for interval in INTERVALS},
    "stream_status": ("raw", "stream_status", STREAM_STATUS_COLUMNS),
    "completeness": ("raw", "completeness", COMPLETENESS_COLUMNS),
    "gap_fills": ("raw", "gap_fills", GAP_FILLS_COLUMNS),
    "candle_audit": ("marts", "candle_audit", AUDIT_COLUMNS),
    "alerts": ("marts", "alerts", ALERTS_COLUMNS),
    "alert_deliveries": ("marts", "alert_deliveries", ALERT_DELIVERIES_COLUMNS),
}
SNAPSHOT_TABLES = (*COPIED_TABLES, "pipeline")
_ALIAS = "snapshot_out"


@dataclass(frozen=True)
class SnapshotInfo:
    """What a publish did: ``path`` is None when there is nothing to publish (Snowflake)."""

    path: Path | None
    rows: dict[str, int]
    published_at: datetime | None
    reason: str = ""


def create_table_sql(name: str, columns: tuple[tuple[str, str], ...], schema: str = "main") -> str:
    body = ", ".join(f'"{column}" {kind}' for column, kind in columns)
    return f'create table {schema}."{name}" ({body})'


def create_empty_snapshot_tables(connection: duckdb.DuckDBPyConnection, schema: str = "main") -> None:
    """Every snapshot table, empty, with its columns (tests write rows into them directly)."""
    for name, (_, _, columns) in COPIED_TABLES.items():
        connection.execute(create_table_sql(name, columns, schema))
    connection.execute(create_table_sql("pipeline", PIPELINE_COLUMNS, schema))


def temporary_path(target: Path) -> Path:
    """A file next to ``target`` that no other writer can name: this process's id and a random id."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True


def remove_leftovers(target: Path) -> list[Path]:
    """Temporary files (and their .wal) of publishes whose process is gone: a crash mid-publish."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[0-9a-f]{{32}}\.tmp(\.wal)?$")
    removed = []
    for path in target.parent.glob(f".{target.name}.*.tmp*"):
        match = pattern.match(path.name)
        if match and not _running(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _existing_tables(execute: Execute) -> set[tuple[str, str]]:
    rows = execute("select schema_name, table_name from duckdb_tables() where database_name = current_database()")
    return {(schema, table) for schema, table in rows}


def _copy(execute: Execute, exchange: str) -> None:
    """The snapshot's tables, written into the attached file."""
    existing = _existing_tables(execute)
    for name, (schema, table, columns) in COPIED_TABLES.items():
        if (schema, table) in existing:
            execute(f'create table {_ALIAS}.main."{name}" as select * from {schema}."{table}"')
        else:  # a fresh warehouse: the table empty, with its columns
            execute(create_table_sql(name, columns, f"{_ALIAS}.main"))
    has_ledger = ("raw", "load_ledger") in existing
    last_load = "(select max(loaded_at) from raw.load_ledger)" if has_ledger else "null::timestamptz"
    execute(create_table_sql("pipeline", PIPELINE_COLUMNS, f"{_ALIAS}.main"))
    execute(
        f"insert into {_ALIAS}.main.pipeline select ?, now(), {last_load}, "
        f"(select max(last_loaded_at) from {_ALIAS}.main.candles_1m)",
        [exchange],
    )


def _write(execute: Execute, temporary: Path, exchange: str) -> SnapshotInfo:
    """The snapshot written whole into ``temporary`` and detached (checkpointed) from the writer."""
    execute(f"attach '{temporary}' as {_ALIAS}")  # a path this module made: no quote in it
    try:
        in_transaction(execute, DUCKDB, lambda: _copy(execute, exchange))
        rows = {name: execute(f'select count(*) from {_ALIAS}.main."{name}"')[0][0] for name in SNAPSHOT_TABLES}
        published_at = execute(f"select published_at from {_ALIAS}.main.pipeline")[0][0]
    finally:
        execute(f"detach {_ALIAS}")
    return SnapshotInfo(temporary, rows, published_at)


def publish_into(execute: Execute, target: Path, exchange: str) -> SnapshotInfo:
    """Publish through a writer's ``execute``: copy into a private file, then replace ``target`` with it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    temporary = temporary_path(target)
    try:
        written = _write(execute, temporary, exchange)
        fsync_dir(temporary)  # a plain fsync through a read-only descriptor: files too
        os.replace(temporary, target)
    except BaseException:
        for leftover in (temporary, temporary.with_name(temporary.name + ".wal")):
            leftover.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)  # the rename itself survives a power loss
    log.info("published the dashboard snapshot %s: %s", target, written.rows)
    return SnapshotInfo(target, written.rows, written.published_at)


def publish_snapshot(settings: Settings) -> SnapshotInfo:
    """Publish the dashboard's snapshot of the DuckDB warehouse; on Snowflake, nothing to do."""
    if settings.warehouse != "duckdb":
        reason = f"WAREHOUSE={settings.warehouse}: the dashboard reads the warehouse directly (reader role)"
        log.info("no dashboard snapshot to publish: %s", reason)
        return SnapshotInfo(None, {}, None, reason)
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        return publish_into(warehouse.execute, settings.snapshot_path, settings.exchange)
