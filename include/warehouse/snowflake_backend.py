"""The production warehouse: Snowflake, loaded with COPY INTO from an external stage on the lake.

Each load names its files explicitly (``FILES = (...)``, at most 1000 per statement), taken from the
lake listing, so Snowflake's own load history decides what is new: a file loaded before is
``LOAD_SKIPPED``, and a re-run or a retry is a no-op. The connection is Airflow's Snowflake provider
(``SnowflakeHook``, connection ``SNOWFLAKE_CONN_ID``), so credentials live in Airflow, never here.

A statement that fails aborts whole (``ON_ERROR = ABORT_STATEMENT``): its files are then copied one
by one, so a corrupt or foreign file is refused by name and every other file still loads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlparse

import duckdb
from snowflake.connector.errors import ProgrammingError

from include.lake.store import ObjectInfo, ObjectStore
from include.warehouse.base import LoadResult, RefusedFile

log = logging.getLogger(__name__)

SETUP_DIR = Path(__file__).with_name("snowflake_setup")
# Versions that create roles, a warehouse and grants: they need ACCOUNTADMIN or SECURITYADMIN.
ACCOUNT_LEVEL_VERSIONS = frozenset({"V001", "V003"})
# Errors about the files themselves. Snowflake raises ProgrammingError; fakesnow (the test double)
# lets DuckDB's own error through for an unreadable file. A lost connection is neither, and raises.
FILE_ERRORS: tuple[type[Exception], ...] = (ProgrammingError, duckdb.Error)
FILES_PER_COPY = 1000  # Snowflake's limit for an explicit FILES list
LOADER_ROLE, READER_ROLE, COMPUTE = "cryptoflow_loader", "cryptoflow_reader", "cryptoflow_wh"


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def stage_location(lake_url: str, storage_integration: str) -> str:
    """The stage's URL clause: an S3 lake goes through a storage integration, a local one needs none."""
    url = lake_url.rstrip("/") + "/"
    if urlparse(url).scheme == "s3":
        return f"url = {_quoted(url)} storage_integration = {storage_integration}"
    return f"url = {_quoted(url)}"


def setup_versions() -> list[tuple[str, Path]]:
    """The versioned setup scripts, in order: ("V001", path), ..."""
    return sorted((path.name.split("__")[0], path) for path in SETUP_DIR.glob("V*__*.sql"))


def render_setup(path: Path, database: str, lake_url: str, storage_integration: str) -> list[str]:
    """One script's statements, with every placeholder filled (a missing one raises KeyError)."""
    text = Template(path.read_text()).substitute(
        database=database,
        stage_location=stage_location(lake_url, storage_integration),
        loader_role=LOADER_ROLE,
        reader_role=READER_ROLE,
        compute=COMPUTE,
    )
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


class SnowflakeWarehouse:
    def __init__(self, conn_id: str = "snowflake_default") -> None:
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        self.hook = SnowflakeHook(snowflake_conn_id=conn_id)
        self.connection = self.hook.get_conn()
        self.connection.autocommit(True)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> SnowflakeWarehouse:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def setup(self, lake_url: str, storage_integration: str, account_level: bool = True) -> list[str]:
        """Apply the setup versions not applied yet, record them, and return what was applied."""
        database = self.connection.database
        if not database:
            raise ValueError("the Snowflake connection names no database: set it in the connection's extra")
        self.execute(f"create database if not exists {database}")
        self.execute(f"create schema if not exists {database}.raw")
        self.execute(
            f"create table if not exists {database}.raw.schema_migrations "
            "(version varchar not null, applied_at timestamp_tz not null default current_timestamp())"
        )
        done = {row[0] for row in self.execute(f"select version from {database}.raw.schema_migrations")}
        applied = []
        for version, path in setup_versions():
            if version in done or (version in ACCOUNT_LEVEL_VERSIONS and not account_level):
                continue
            for statement in render_setup(path, database, lake_url, storage_integration):
                self.execute(statement)
            self.execute(f"insert into {database}.raw.schema_migrations (version) values (%s)", [version])
            applied.append(version)
            log.info("applied Snowflake setup %s", path.name)
        return applied

    def read_cursor(self) -> dict[str, str] | None:
        rows = self.execute("select markers from raw.load_cursor")
        return json.loads(rows[0][0]) if rows else None

    def save_cursor(self, cursor: dict[str, str]) -> None:
        self.execute("begin")
        self.execute("delete from raw.load_cursor")
        self.execute("insert into raw.load_cursor (markers) values (%s)", [json.dumps(cursor)])
        self.execute("commit")

    def _refused(self) -> set[tuple[str, str]]:
        return {(key, etag) for key, etag in self.execute("select file_key, etag from raw.load_refusals")}

    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo]) -> LoadResult:
        """COPY the files in; Snowflake's load history skips every file it loaded before."""
        listed = list(infos)
        refused_before = self._refused() if listed else set()
        candidates = [info for info in listed if (info.key, info.etag) not in refused_before]
        result = LoadResult(files_skipped=len(listed) - len(candidates))
        for start in range(0, len(candidates), FILES_PER_COPY):
            chunk = candidates[start : start + FILES_PER_COPY]
            try:
                self._copy(chunk, result)
            except FILE_ERRORS as error:
                if len(chunk) == 1:
                    self._refuse(chunk[0], error, result)
                    continue
                log.warning("COPY of %d files failed (%s): copying them one by one", len(chunk), _first_line(error))
                for info in chunk:
                    try:
                        self._copy([info], result)
                    except FILE_ERRORS as single_error:
                        self._refuse(info, single_error, result)
        return result

    def _copy(self, infos: list[ObjectInfo], result: LoadResult) -> None:
        files = ", ".join(_quoted(info.key) for info in infos)
        # The stage's own file format is named again here: fakesnow ignores a stage's format.
        rows = self.execute(
            f"copy into raw.trades from @raw.lake files = ({files}) "
            "file_format = (format_name = 'raw.lake_parquet') "
            "match_by_column_name = case_insensitive on_error = abort_statement"
        )
        for row in rows:
            status, rows_loaded = str(row[1]).upper(), int(row[3] or 0)
            if status == "LOADED":
                result.files_loaded += 1
                result.rows_loaded += rows_loaded
            elif status == "LOAD_SKIPPED":
                result.files_skipped += 1
            else:
                raise ProgrammingError(msg=f"COPY INTO reported {status} for {row[0]}: {row[6]}")

    def _refuse(self, info: ObjectInfo, copy_error: Exception, result: LoadResult) -> None:
        error = RefusedFile(f"{info.key}: COPY INTO refused it ({_first_line(copy_error)})")
        log.error("refused %s", error)
        result.refused.append(str(error))
        self.execute(
            "insert into raw.load_refusals (file_key, etag, reason) values (%s, %s, %s)",
            [info.key, info.etag, str(error)],
        )
