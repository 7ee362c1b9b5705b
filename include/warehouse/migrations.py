"""Versioned schema scripts, applied once each and recorded: the one migration runner of both backends.

A backend keeps its DDL as ``V001__what.sql``, ``V002__...`` in a folder next to its code
(``duckdb_setup/``, ``snowflake_setup/``). The runner applies, in order, the versions its table of
applied versions (``raw.schema_migrations``) does not name yet, and records each one. Where DDL is
transactional (DuckDB) a version and its record commit together, so a crash mid-migration leaves
the version either wholly applied or not at all, and the next start applies it.

A schema change is a new version, never an edit of an applied one: a warehouse created before the
change is then brought up to date the next time it is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from include.warehouse.shared import Dialect, Execute
from include.warehouse.sql import in_transaction

MIGRATIONS_TABLE = "raw.schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: str  # "V001"
    path: Path


def versions(folder: Path) -> list[Migration]:
    """The folder's ``V<nnn>__<what>.sql`` scripts, in version order."""
    found = sorted((path.name.split("__")[0], path) for path in folder.glob("V*__*.sql"))
    return [Migration(version, path) for version, path in found]


def statements(script: str) -> list[str]:
    """A script's statements: ``--`` comment lines dropped, split on ``;``."""
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


def applied_versions(execute: Execute, table: str = MIGRATIONS_TABLE) -> set[str]:
    return {row[0] for row in execute(f"select version from {table}")}


def migrate(
    execute: Execute,
    dialect: Dialect,
    folder: Path,
    *,
    table: str = MIGRATIONS_TABLE,
    render: Callable[[str], str] = str,
    skip: Collection[str] = (),
) -> list[str]:
    """Apply the versions of ``folder`` not recorded in ``table`` (nor in ``skip``); the versions applied.

    ``table`` is schema-qualified; its schema is created first. ``render`` fills a script's
    placeholders before it is split into statements.
    """
    schema = table.rsplit(".", 1)[0]
    execute(f"create schema if not exists {schema}")
    execute(
        f"create table if not exists {table} "
        f"(version varchar not null, applied_at {dialect.timestamp_type} not null default current_timestamp)"
    )
    done = applied_versions(execute, table)
    applied = []
    for migration in versions(folder):
        if migration.version in done or migration.version in skip:
            continue
        work = statements(render(migration.path.read_text()))

        def apply(work: list[str] = work, version: str = migration.version) -> None:
            for statement in work:
                execute(statement)
            execute(f"insert into {table} (version) values ({dialect.placeholder})", [version])

        if dialect.transactional_ddl:
            in_transaction(execute, dialect, apply)
        else:
            apply()
        applied.append(migration.version)
    return applied
