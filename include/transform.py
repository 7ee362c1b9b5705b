"""The transform: ``dbt build`` of the project in ``include/dbt`` on the configured warehouse.

dbt runs in this process through its Python API (``dbtRunner``), on the target ``WAREHOUSE`` names,
with the DuckDB file ``DUCKDB_PATH`` resolved by ``include.config`` (profiles.yml reads it from the
environment). Partial parsing stays on: a build after one micro-batch should not re-parse the project.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from include.config import Settings

DBT_PROJECT_DIR = Path(__file__).with_name("dbt")
FAILED_STATUSES = ("error", "fail", "runtime error")


class TransformFailed(RuntimeError):
    """dbt could not run, or a model or a test failed; the message names them."""


@dataclass
class TransformResult:
    nodes: int = 0  # models and tests dbt ran
    warnings: list[str] = field(default_factory=list)  # tests at severity warn that found rows

    def as_dict(self) -> dict[str, object]:
        return {"nodes": self.nodes, "warnings": self.warnings}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (dbt reads them in-process), then restore them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dbt_args(
    settings: Settings,
    command: str = "build",
    full_refresh: bool = False,
    select: Sequence[str] = (),
    target_dir: Path | None = None,
) -> list[str]:
    """The dbt command line for this project on the configured warehouse."""
    args = [command, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    args += ["--target", settings.warehouse, "--partial-parse"]
    if target_dir is not None:  # another build's artifacts and logs, e.g. a second warehouse's
        args += ["--target-path", str(target_dir), "--log-path", str(target_dir / "logs")]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", *select]
    return args


def transform(
    settings: Settings,
    full_refresh: bool = False,
    select: Sequence[str] = (),
    target_dir: Path | None = None,
) -> TransformResult:
    """``dbt build``: every model, then its tests; raises TransformFailed naming what failed."""
    from dbt.cli.main import dbtRunner

    args = dbt_args(settings, "build", full_refresh, select, target_dir)
    with _environment({"DUCKDB_PATH": str(settings.duckdb_path)}):
        try:
            outcome = dbtRunner().invoke(args)
        finally:
            if settings.warehouse == "duckdb":
                _release_duckdb()
    if outcome.exception is not None:
        raise TransformFailed(f"dbt build could not run: {outcome.exception}")
    results = list(outcome.result or [])
    failed = [f"{result.node.name}: {result.status} ({result.message})" for result in results if _failed(result)]
    if failed or not outcome.success:
        raise TransformFailed(f"dbt build failed: {'; '.join(failed) or 'see the dbt log'}")
    warnings = [f"{result.node.name}: {result.message}" for result in results if str(result.status) == "warn"]
    return TransformResult(nodes=len(results), warnings=warnings)


def _release_duckdb() -> None:
    """Close the DuckDB file dbt-duckdb keeps open in this process after a run.

    DuckDB allows one writing process per file, and in this process a connection with another
    configuration (the loader's, a read-only reader's) is refused while dbt's is open.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()


def _failed(result: object) -> bool:
    return str(getattr(result, "status", "")) in FAILED_STATUSES
