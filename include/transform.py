"""The transform: ``dbt build`` of the project in ``include/dbt`` on the configured warehouse.

dbt runs in this process through its Python API (``dbtRunner``), on the target ``WAREHOUSE`` names,
with the environment ``dbt_environment`` makes of the settings (profiles.yml reads the DuckDB file
from it; the warehouse DAG's dbt tasks get the same, include/transform_group.py). Partial parsing
stays on: a build after one micro-batch should not re-parse the project. ``source_freshness`` is
``dbt source freshness`` the same way: how long ago each source was last loaded. ``write_manifest``
is ``dbt parse``: the manifest the warehouse DAG renders from.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from include.config import Settings

DBT_PROJECT_DIR = Path(__file__).with_name("dbt")
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"  # `make manifest` writes it
# The tests that read every trade (raw.trades, stg_trades), every row of a mart, or a whole staging view
# of the repair's and the stream's status: their cost grows with the history (the views' tests, ten dbt
# nodes, were also 1.5 s of every micro-batch), so the build after each micro-batch leaves them out (it
# tests the marts' rows it rewrote: include/dbt/macros/tested_rows.sql) and the nightly reconcile runs
# them (dags/warehouse.py).
NIGHTLY_TAG = "nightly"
PER_BATCH_EXCLUDE = (f"tag:{NIGHTLY_TAG}",)
FAILED_STATUSES = ("error", "fail", "runtime error")


class TransformFailed(RuntimeError):
    """dbt could not run, or a model or a test failed; the message names them."""


@dataclass
class TransformResult:
    nodes: int = 0  # models and tests dbt ran
    warnings: list[str] = field(default_factory=list)  # tests at severity warn that found rows
    # dbt's own timings: its run from the first node to the last, and the sums per kind of node
    elapsed_seconds: float = 0.0
    model_seconds: float = 0.0
    test_seconds: float = 0.0
    # each node's own time by its name (a test's name names its model): which node a build's time is in
    node_seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        timings = {
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "model_seconds": round(self.model_seconds, 3),
            "test_seconds": round(self.test_seconds, 3),
        }
        return {"nodes": self.nodes, "warnings": self.warnings, **timings}


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


def dbt_environment(settings: Settings) -> dict[str, str]:
    """The environment profiles.yml reads: the DuckDB file as ``include.config`` resolves it.

    The one place the settings reach dbt's profile, for the runs in this process and the warehouse
    DAG's dbt tasks alike.
    """
    return {"DUCKDB_PATH": str(settings.duckdb_path)}


def dbt_args(
    settings: Settings,
    command: str = "build",
    full_refresh: bool = False,
    select: Sequence[str] = (),
    target_dir: Path | None = None,
    exclude: Sequence[str] = (),
    write_json: bool = False,
) -> list[str]:
    """The dbt command line for this project on the configured warehouse.

    No JSON artifacts unless ``write_json`` (``make manifest``'s parse): writing manifest.json and
    run_results.json costs about half a second per run, and the results come back in this process.
    """
    args = [command, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    args += ["--target", settings.warehouse, "--partial-parse", "--write-json" if write_json else "--no-write-json"]
    if target_dir is not None:  # another build's artifacts and logs, e.g. a second warehouse's
        args += ["--target-path", str(target_dir), "--log-path", str(target_dir / "logs")]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", *select]
    if exclude:
        args += ["--exclude", *exclude]
    return args


def transform(
    settings: Settings,
    full_refresh: bool = False,
    select: Sequence[str] = (),
    target_dir: Path | None = None,
    exclude: Sequence[str] = (),
    command: str = "build",
) -> TransformResult:
    """``dbt build`` (or ``command``, e.g. ``test``): every model, then its tests; raises
    TransformFailed naming what failed."""
    outcome = _invoke(settings, dbt_args(settings, command, full_refresh, select, target_dir, exclude))
    if outcome.exception is not None:
        raise TransformFailed(f"dbt {command} could not run: {outcome.exception}")
    results = list(outcome.result or [])
    failed = [f"{result.node.name}: {result.status} ({result.message})" for result in results if _failed(result)]
    if failed or not outcome.success:
        raise TransformFailed(f"dbt {command} failed: {'; '.join(failed) or 'see the dbt log'}")
    warnings = [f"{result.node.name}: {result.message}" for result in results if str(result.status) == "warn"]
    seconds = {"model": 0.0, "test": 0.0}
    for result in results:
        kind = str(result.node.resource_type)
        seconds[kind] = seconds.get(kind, 0.0) + result.execution_time
    elapsed = getattr(outcome.result, "elapsed_time", 0.0) or 0.0
    nodes = {result.node.name: result.execution_time for result in results}
    return TransformResult(len(results), warnings, elapsed, seconds["model"], seconds["test"], nodes)


def write_manifest(settings: Settings) -> Path:
    """``dbt parse``: writes the manifest the warehouse DAG renders from, and returns its path.

    Raises TransformFailed when the project does not parse. It opens no warehouse.
    """
    outcome = _invoke(settings, [*dbt_args(settings, "parse", write_json=True), "--quiet"])
    if not outcome.success:
        raise TransformFailed(f"dbt parse failed: {outcome.exception or 'see include/dbt/logs/dbt.log'}")
    return MANIFEST_PATH


@dataclass(frozen=True)
class SourceFreshness:
    """One source's freshness: ``pass`` or ``warn`` (an ``error`` raises), its newest loaded_at and age."""

    status: str
    max_loaded_at: datetime
    age_seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "max_loaded_at": self.max_loaded_at.isoformat(),
            "age_seconds": round(self.age_seconds, 3),
        }


def source_freshness(settings: Settings, target_dir: Path | None = None) -> dict[str, SourceFreshness]:
    """``dbt source freshness``: each source with a freshness check (``raw.trades``) by name.

    Raises TransformFailed naming every source past its ``error_after``, or whose check could not run
    (e.g. a warehouse never loaded); a source past ``warn_after`` only is returned with status ``warn``.
    """
    outcome = _invoke(settings, ["source", *dbt_args(settings, "freshness", target_dir=target_dir)])
    if outcome.exception is not None:
        raise TransformFailed(f"dbt source freshness could not run: {outcome.exception}")
    results = list(getattr(outcome.result, "results", None) or [])
    failed = [failure for result in results if (failure := _freshness_failure(result))]
    if failed or not outcome.success:
        raise TransformFailed(f"dbt source freshness failed: {'; '.join(failed) or 'see the dbt log'}")
    return {
        _source_name(result): SourceFreshness(str(result.status), result.max_loaded_at, result.age)
        for result in results
    }


def _source_name(result: Any) -> str:
    return f"{result.node.source_name}.{result.node.name}"


def _freshness_failure(result: Any) -> str | None:
    """What is wrong with one source's freshness result; None if it passes or only warns."""
    status = str(result.status)
    if status in ("pass", "warn"):
        return None
    if status != "error":  # the check itself failed: no max_loaded_at to judge
        return f"{_source_name(result)}: {status} ({result.message})"
    limit = result.node.freshness.error_after
    return (
        f"{_source_name(result)} is stale: last loaded at {result.max_loaded_at.isoformat()}, "
        f"{result.age / 3600:.1f} h ago (error_after: {limit.count} {limit.period})"
    )


def _invoke(settings: Settings, args: list[str]) -> Any:
    """Run dbt in this process on the configured warehouse; the DuckDB file is released after."""
    from dbt.cli.main import dbtRunner

    with _environment(dbt_environment(settings)):
        try:
            return dbtRunner().invoke(args)
        finally:
            if settings.warehouse == "duckdb":
                _release_duckdb()


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
