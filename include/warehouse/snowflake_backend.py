"""The production warehouse: Snowflake, loaded with COPY INTO from an external stage on the lake.

Each load names its files explicitly (``FILES = (...)``, at most 1000 per statement), taken from the
lake listing, so Snowflake's own load history decides what is new: a file loaded before is
``LOAD_SKIPPED``, and a re-run or a retry is a no-op. The connection is Airflow's Snowflake provider
(``SnowflakeHook``, connection ``SNOWFLAKE_CONN_ID``), so credentials live in Airflow, never here.

A statement that fails aborts whole (``ON_ERROR = ABORT_STATEMENT``): its files are then copied one
by one, so a corrupt or foreign file is refused by name and every other file still loads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlparse

from snowflake.connector.errors import ProgrammingError

from include.lake.store import ObjectInfo, ObjectStore
from include.warehouse.backend import SQLWarehouse
from include.warehouse.migrations import Migration, migrate, statements, versions
from include.warehouse.shared import SNOWFLAKE, LoadResult, RefusedFile

log = logging.getLogger(__name__)

SETUP_DIR = Path(__file__).with_name("snowflake_setup")
# Versions that create roles, a warehouse and grants: they need ACCOUNTADMIN or SECURITYADMIN.
ACCOUNT_LEVEL_VERSIONS = frozenset({"V001", "V003", "V005", "V007", "V009"})
# Errors about the files themselves: Snowflake raises ProgrammingError for a file COPY cannot load.
# A lost connection (OperationalError, ...) is not one, and raises.
FILE_ERRORS: tuple[type[Exception], ...] = (ProgrammingError,)
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


def setup_versions() -> list[Migration]:
    """The versioned setup scripts, in order."""
    return versions(SETUP_DIR)


def render_script(script: str, database: str, lake_url: str, storage_integration: str) -> str:
    """A setup script with every placeholder filled (a missing one raises KeyError)."""
    return Template(script).substitute(
        database=database,
        stage_location=stage_location(lake_url, storage_integration),
        loader_role=LOADER_ROLE,
        reader_role=READER_ROLE,
        compute=COMPUTE,
    )


def render_setup(path: Path, database: str, lake_url: str, storage_integration: str) -> list[str]:
    """One script's statements, with every placeholder filled."""
    return statements(render_script(path.read_text(), database, lake_url, storage_integration))


def _tally(row: tuple, result: LoadResult) -> None:
    """Count one row of COPY INTO's result: a file LOADED or LOAD_SKIPPED; anything else raises."""
    status, rows_loaded = str(row[1]).upper(), int(row[3] or 0)
    if status == "LOADED":
        result.files_loaded += 1
        result.rows_loaded += rows_loaded
    elif status == "LOAD_SKIPPED":
        result.files_skipped += 1
    else:
        raise ProgrammingError(msg=f"COPY INTO reported {status} for {row[0]}: {row[6]}")


class SnowflakeWarehouse(SQLWarehouse):
    dialect = SNOWFLAKE

    def __init__(
        self, conn_id: str = "snowflake_default", file_errors: tuple[type[Exception], ...] = FILE_ERRORS
    ) -> None:
        """``file_errors``: the exceptions that mean "this file cannot be loaded" (refused, by name)."""
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        self.hook = SnowflakeHook(snowflake_conn_id=conn_id)
        super().__init__(self.hook.get_conn())
        self.connection.autocommit(True)
        self.file_errors = file_errors

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
        applied = migrate(
            self.execute,
            SNOWFLAKE,
            SETUP_DIR,
            table=f"{database}.raw.schema_migrations",
            render=lambda script: render_script(script, database, lake_url, storage_integration),
            skip=() if account_level else ACCOUNT_LEVEL_VERSIONS,
        )
        for version in applied:
            log.info("applied Snowflake setup %s", version)
        return applied

    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo]) -> LoadResult:
        """COPY the files in; Snowflake's load history skips every file it loaded before."""
        listed = list(infos)
        candidates = self.not_refused(listed)
        result = LoadResult(files_skipped=len(listed) - len(candidates))
        for start in range(0, len(candidates), FILES_PER_COPY):
            chunk = candidates[start : start + FILES_PER_COPY]
            try:
                self._copy(chunk, result)
            except self.file_errors as error:
                if len(chunk) == 1:
                    self._refuse(chunk[0], error, result)
                    continue
                log.warning("COPY of %d files failed (%s): copying them one by one", len(chunk), _first_line(error))
                for info in chunk:
                    try:
                        self._copy([info], result)
                    except self.file_errors as single_error:
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
        self._stamp_loaded_at()
        for row in rows:
            _tally(row, result)

    def _stamp_loaded_at(self) -> None:
        """Give the rows COPY just committed their ``loaded_at``: one instant for all of them.

        MATCH_BY_COLUMN_NAME fills ``loaded_at`` (no Parquet column) with NULL. Stamping in a
        statement of its own, not in a transaction with the COPY, keeps Snowflake's load history
        out of any rollback; a load that dies in between leaves rows without ``loaded_at``, which
        incremental staging does not see yet, and the next load stamps them.
        (INCLUDE_METADATA's METADATA$START_SCAN_TIME would differ per file scan; fakesnow lacks it.)
        """
        self.execute("update raw.trades set loaded_at = current_timestamp() where loaded_at is null")

    def _refuse(self, info: ObjectInfo, copy_error: Exception, result: LoadResult) -> None:
        self.refuse(info, RefusedFile(f"{info.key}: COPY INTO refused it ({_first_line(copy_error)})"), result)
