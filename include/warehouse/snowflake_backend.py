"""The production warehouse: Snowflake, loaded with COPY INTO from an external stage on the lake.

Exactly once, for as long as the lake keeps its files: the load ledger (``raw.load_ledger``, setup
V010: key, size, ETag, rows, loaded_at), as on DuckDB, is the one record of what was loaded. A load
copies only the files the ledger does not name (``SQLWarehouse.not_loaded``), and each COPY commits
in one explicit transaction with the ``loaded_at`` of its rows and the ledger rows of its files
(``begin; copy ...; update ...; insert into raw.load_ledger ...; commit``): a crash or a lost
connection before the commit leaves neither, and the next load copies those files then.

Snowflake's own load history is not used. It forgets a file after 64 days, and then by default skips
it as "uncertain" (``LOAD_UNCERTAIN_FILES = FALSE``) even if it was never loaded, while a file that
is re-uploaded, or found by a reconcile after the history is gone, would load a second time. So
every COPY is ``FORCE = TRUE``: it loads exactly the files it names, and the ledger alone decides
which those are, on day 1 or day 1000. ``LOAD_UNCERTAIN_FILES = TRUE`` was the alternative: it
would still let the history skip a file loaded in the last 64 days that the ledger does not name
(one whose COPY was rolled back, had the history outlived the rollback), which would be a loss
the ledger could not see, and fakesnow, which models FORCE, rejects it untested. FORCE leaves one
judge, tested the same way on both backends.

Adopting: a warehouse loaded before V010 holds rows that no ledger row accounts for, and a load by
the ledger alone would copy its files again. Until ``raw.ledger_adopted`` (V012) holds its one row,
the warehouse is adopting: ``read_cursor`` answers None, so the load lists the whole lake, and every
COPY keeps only the trade ids ``raw.trades`` does not hold yet (``_drop_held``, the rule of compacted
files) in the transaction that enters its files in the ledger. A file the old code loaded gets its
ledger row and adds no row; a file it never loaded is loaded. The load that went through the whole
listing inserts the flag in the transaction that saves its cursor (``save_cursor``); a crash before
leaves the warehouse adopting, and adopting again is harmless: the ledger filters what committed,
the ids the rest. Rows an old load left without ``loaded_at`` (it stamped after its COPY had
committed) are stamped first, so they count as held. V012 sets the flag at once where ``raw.trades``
is empty: a new warehouse never adopts. One set up with V010 adopts too, which costs one listing of
the lake and copies nothing its ledger names.

Adopting by ids, not by Snowflake's load history (which the old code trusted: a COPY without FORCE
would skip the files it remembers, without reading them), because the history would decide three
things no test can check: a file older than 64 days is "uncertain" and skipped whether it was
loaded or not (adopted on the belief that the old code, running continuously, loaded it); a file
re-uploaded with a new ETag loads a second time; and whether the history of a COPY rolled back with
its transaction is rolled back too is not documented (the old code kept its COPY out of any
transaction for that reason): if not, a crash mid-adoption would leave a file the history names and
``raw.trades`` lacks, which the next pass would adopt unloaded, a silent loss. fakesnow models none
of the three, and its report of a skipped file (a LOAD_SKIPPED row) is not Snowflake's, which
leaves the file out (or answers "Copy executed with 0 files processed.").
The price of the ids: the adopting load reads the whole lake once, and deletes the rows it copied
again, in COPYs of at most 1000 files, once per warehouse.

Each load names its files explicitly (``FILES = (...)``, at most 1000 per statement). The connection
is Airflow's Snowflake provider (``SnowflakeHook``, connection ``SNOWFLAKE_CONN_ID``), so credentials
live in Airflow, never here.

A statement that fails aborts whole (``ON_ERROR = ABORT_STATEMENT``) and its transaction rolls back:
its files are then copied one by one, each in its own transaction, so a corrupt or foreign file is
refused by name and every other file still loads.

The ledger is read before the transaction, so two loads at once could both copy a file (Snowflake
enforces no primary key): loads take turns, as the warehouse DAG runs one at a time in the
one-slot ``warehouse_writer`` pool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlparse

from snowflake.connector.errors import ProgrammingError

from include.lake.keys import is_compacted
from include.lake.store import ObjectInfo, ObjectStore
from include.warehouse.backend import SQLWarehouse, new_ids_only
from include.warehouse.migrations import Migration, migrate, statements, versions
from include.warehouse.shared import SNOWFLAKE, LoadResult, RefusedFile
from include.warehouse.sql import in_transaction, row_chunks

log = logging.getLogger(__name__)

SETUP_DIR = Path(__file__).with_name("snowflake_setup")
# Versions that create roles, a warehouse and grants: they need ACCOUNTADMIN or SECURITYADMIN.
ACCOUNT_LEVEL_VERSIONS = frozenset({"V001", "V003", "V005", "V007", "V009", "V011", "V013", "V014"})
# Errors about the files themselves: Snowflake raises ProgrammingError for a file COPY cannot load.
# A lost connection (OperationalError, ...) is not one, and raises.
FILE_ERRORS: tuple[type[Exception], ...] = (ProgrammingError,)
FILES_PER_COPY = 1000  # Snowflake's limit for an explicit FILES list
LOADER_ROLE, READER_ROLE, COMPUTE = "cryptoflow_loader", "cryptoflow_reader", "cryptoflow_wh"
# The rows a COPY of compacted files, or an adopting COPY, just inserted (loaded_at not stamped yet)
# whose id was held before.
DROP_HELD = """
delete from raw.trades as fresh using (
    select held.exchange, held.symbol, held.trade_id
    from raw.trades as held
    inner join (
        select exchange, symbol, min(trade_id) as low, max(trade_id) as high
        from raw.trades where loaded_at is null group by exchange, symbol
    ) as copied
        on held.exchange = copied.exchange and held.symbol = copied.symbol
        and held.trade_id between copied.low and copied.high
    where held.loaded_at is not null
) as held
where fresh.loaded_at is null
    and fresh.exchange = held.exchange and fresh.symbol = held.symbol and fresh.trade_id = held.trade_id
"""


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


class CopyReportError(RuntimeError):
    """COPY INTO's report does not account for the files it named: the transaction rolls back, the load stops."""


def rows_per_file(report: list[tuple], infos: list[ObjectInfo]) -> dict[str, int]:
    """Each named file's rows, from COPY INTO's report (file, status, rows_parsed, rows_loaded, ...).

    A file reported other than LOADED is a file COPY could not load (``ProgrammingError``, so it is
    copied alone and refused by name). A report that does not name each file once, or says
    LOAD_SKIPPED (which FORCE rules out), is not about the files: ``CopyReportError``, never a refusal.
    """
    by_name: dict[str, list[str]] = {}
    for info in infos:
        by_name.setdefault(info.key.rsplit("/", 1)[-1], []).append(info.key)
    rows: dict[str, int] = {}
    for file, status, *counts in report:
        status = str(status).upper()
        if status == "LOAD_SKIPPED":
            raise CopyReportError(f"COPY INTO skipped {file} despite FORCE = TRUE")
        if status != "LOADED":
            raise ProgrammingError(msg=f"COPY INTO reported {status} for {file}: {counts[4]}")
        # An external stage reports the file's whole URL: the stage's location, then the key.
        name = str(file)
        named = [key for key in by_name.get(name.rsplit("/", 1)[-1], []) if name == key or name.endswith("/" + key)]
        if len(named) != 1 or named[0] in rows:
            raise CopyReportError(f"COPY INTO reported {file}, which is not one of the files it was given")
        rows[named[0]] = int(counts[1] or 0)
    if missing := [info.key for info in infos if info.key not in rows]:
        raise CopyReportError(f"COPY INTO did not report {len(missing)} of its files, {missing[0]} first")
    return rows


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

    def adopting(self) -> bool:
        """Whether the ledger has still to adopt what loads before it copied (module docstring)."""
        ((flags,),) = self.execute("select count(*) from raw.ledger_adopted")
        return int(flags) == 0

    def read_cursor(self) -> dict[str, str] | None:
        """None while adopting: the load lists the whole lake, so every file gets its ledger row."""
        return None if self.adopting() else super().read_cursor()

    def save_cursor(self, cursor: dict[str, str]) -> None:
        """Save the cursor; while adopting, and the flag with it, in one transaction.

        The cursor is saved after the load of a discovery made from ``read_cursor()``, which was
        None while adopting: that load listed the whole lake, and each file it listed is now in the
        ledger (or refused, or compacted away since the listing, its rows in the compacted file)."""
        adopting = self.adopting()

        def replace_and_adopt() -> None:
            self.replace_cursor(cursor)
            if adopting:
                self.execute("insert into raw.ledger_adopted (adopted_at) values (current_timestamp())")

        in_transaction(self.execute, SNOWFLAKE, replace_and_adopt)
        if adopting:
            log.info("the load ledger has adopted every file of the lake: loads list what markers name again")

    def load(self, lake: ObjectStore, infos: Iterable[ObjectInfo]) -> LoadResult:
        """COPY in the files the ledger does not hold, each COPY in one transaction with their ledger rows.

        Compacted files (include/lake/compaction.py), and files of a compacted partition
        (``new_ids_only``), are copied in COPYs of their own. They, and every file while adopting,
        keep only the ids ``raw.trades`` did not hold (``_drop_held``)."""
        listed = list(infos)
        adopting = self.adopting()
        candidates = self.not_loaded(listed)
        result = LoadResult(files_skipped=len(listed) - len(candidates))
        if adopting and candidates:
            log.info("adopting %d files into the load ledger: only ids raw.trades lacks are kept", len(candidates))
            self._stamp_loaded_at(self._now())  # an old load's unstamped rows: held, not fresh
        ids_only = new_ids_only(lake, listed)
        for compacted in (False, True):
            files = [info for info in candidates if (info.key in ids_only) == compacted]
            for start in range(0, len(files), FILES_PER_COPY):
                self._load_chunk(lake, files[start : start + FILES_PER_COPY], result, adopting or compacted)
        return result

    def _load_chunk(self, lake: ObjectStore, chunk: list[ObjectInfo], result: LoadResult, new_ids_only: bool) -> None:
        try:
            self._commit(lake, chunk, result, new_ids_only)
        except self.file_errors as error:
            if len(chunk) == 1:
                self._refuse(lake, chunk[0], error, result)
                return
            log.warning("COPY of %d files failed (%s): copying them one by one", len(chunk), _first_line(error))
            for info in chunk:
                try:
                    self._commit(lake, [info], result, new_ids_only)
                except self.file_errors as single_error:
                    self._refuse(lake, info, single_error, result)

    def _commit(self, lake: ObjectStore, infos: list[ObjectInfo], result: LoadResult, new_ids_only: bool) -> None:
        """The files' rows (with ``new_ids_only``, those whose id ``raw.trades`` lacked), their
        ``loaded_at`` and their ledger rows, in one transaction; counted once committed."""
        rows: dict[str, int] = {}
        dropped = 0

        def copy_stamp_and_record() -> None:
            nonlocal dropped
            loaded_at = self._now()
            rows.update(rows_per_file(self._copy(infos), infos))
            if new_ids_only:
                dropped = self._drop_held()
            self._stamp_loaded_at(loaded_at)
            self._record(infos, rows, loaded_at)

        in_transaction(self.execute, SNOWFLAKE, copy_stamp_and_record)
        result.files_loaded += len(infos)
        result.rows_loaded += sum(rows.values()) - dropped
        result.compacted += [info.key for info in infos if is_compacted(info.key)]

    def _drop_held(self) -> int:
        """Delete the rows just copied (``loaded_at`` still null) whose id ``raw.trades`` held already.

        Compacted files repeat trades that were most likely loaded from the files they replace, and
        an adopting load copies files a load before the ledger most likely loaded; a warehouse that
        never saw those keeps every row. Runs in the COPY's transaction, so no reader sees the
        repeats. The held ids are looked up within the copied ids' range per symbol only."""
        ((deleted, *_),) = self.execute(DROP_HELD)
        return int(deleted)

    def _now(self) -> str:
        """Snowflake's clock, as ISO text: the one ``loaded_at`` of a commit's rows and ledger rows.

        One value bound into both statements, as CURRENT_TIMESTAMP is each statement's own start.
        """
        ((now,),) = self.execute("select current_timestamp()")
        return now.isoformat()

    def _copy(self, infos: list[ObjectInfo]) -> list[tuple]:
        """COPY INTO raw.trades exactly these files (FORCE: the ledger, not the load history, chose them)."""
        files = ", ".join(_quoted(info.key) for info in infos)
        # The stage's own file format is named again here: fakesnow ignores a stage's format.
        return self.execute(
            f"copy into raw.trades from @raw.lake files = ({files}) "
            "file_format = (format_name = 'raw.lake_parquet') "
            "match_by_column_name = case_insensitive on_error = abort_statement force = true"
        )

    def _stamp_loaded_at(self, loaded_at: str) -> None:
        """Give the rows the COPY just inserted their ``loaded_at``, in the COPY's transaction.

        MATCH_BY_COLUMN_NAME fills ``loaded_at`` (no Parquet column) with NULL; the update gives
        them the commit's instant before anyone can see them, so no committed row lacks it and
        incremental staging never misses one. (Before the ledger, the stamp ran after the COPY had
        committed, to keep the load history out of a rollback; FORCE makes that history irrelevant.)
        Rows a load of that earlier code left unstamped are stamped here too, as it promised.
        (INCLUDE_METADATA's METADATA$START_SCAN_TIME would differ per file scan; fakesnow lacks it.)
        """
        self.execute(
            f"update raw.trades set loaded_at = cast({SNOWFLAKE.placeholder} as timestamp_tz) where loaded_at is null",
            [loaded_at],
        )

    def _record(self, infos: list[ObjectInfo], rows: dict[str, int], loaded_at: str) -> None:
        """The files' ledger rows: key, size, ETag, rows loaded, and the commit's ``loaded_at``."""
        row = f"({', '.join([SNOWFLAKE.placeholder] * 4)}, cast({SNOWFLAKE.placeholder} as timestamp_tz))"
        for chunk in row_chunks(infos):
            values = [value for info in chunk for value in (info.key, info.size, info.etag, rows[info.key], loaded_at)]
            self.execute(
                "insert into raw.load_ledger (file_key, size, etag, row_count, loaded_at) "
                f"values {', '.join([row] * len(chunk))}",
                values,
            )

    def _refuse(self, lake: ObjectStore, info: ObjectInfo, copy_error: Exception, result: LoadResult) -> None:
        """Refuse the file by name, unless it is gone since the listing (compacted away: its rows are in
        the compacted file, which ``load_lake`` looks for in the file's partition)."""
        if not lake.exists(info.key):
            log.info("%s is gone since the listing (compacted); its rows come with the compacted file", info.key)
            result.vanished.append(info.key)
            return
        self.refuse(info, RefusedFile(f"{info.key}: COPY INTO refused it ({_first_line(copy_error)})"), result)
