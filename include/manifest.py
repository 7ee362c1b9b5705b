"""The dbt manifest the warehouse DAG renders from: whether it is out of date, and building it when it is.

The warehouse DAG file reads ``include/dbt/target/manifest.json`` when the dag-processor imports it
(Cosmos' LoadMode.DBT_MANIFEST). Without it the DAG fails to import on every parse and no candle is
ever built, so whatever starts the DAGs builds it first: ``make up`` through its ``manifest`` rule,
``python -m include.cli up`` through ``ensure_manifest`` (it must not depend on make), the image with
``python -m include.transform_group``. The sources are the ones the Makefile's ``DBT_SOURCES`` lists.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from include.transform import DBT_PROJECT_DIR, MANIFEST_PATH

# What dbt writes or installs into the project folder: its output, its logs, the packages of `dbt deps`.
NOT_SOURCES = ("target", "logs", "dbt_packages")
SOURCE_SUFFIXES = (".sql", ".yml")  # models, macros, tests, dbt_project.yml, profiles.yml, schema files
BUILD_COMMAND = "make manifest (or: python -m include.transform_group)"
BUILD_TIMEOUT_SECONDS = 300.0  # a parse takes seconds; only a hung dbt reaches this


def dbt_sources(project_dir: Path = DBT_PROJECT_DIR) -> list[Path]:
    """Every file of the dbt project the manifest is parsed from."""
    return sorted(
        path
        for path in project_dir.rglob("*")
        if path.suffix in SOURCE_SUFFIXES
        and path.is_file()
        and path.relative_to(project_dir).parts[0] not in NOT_SOURCES
    )


def manifest_out_of_date(project_dir: Path = DBT_PROJECT_DIR, manifest: Path | None = None) -> str | None:
    """Why the manifest must be (re)built: it is missing, or older than a source it names; None when fresh."""
    manifest = manifest or project_dir / "target" / "manifest.json"
    root = project_dir.parents[1]  # the checkout: paths are shown as include/dbt/...
    if not manifest.is_file():
        return f"{manifest.relative_to(root)} is missing"
    built = manifest.stat().st_mtime_ns
    newer = [path for path in dbt_sources(project_dir) if path.stat().st_mtime_ns > built]
    if newer:
        return f"{manifest.relative_to(root)} is older than {newer[0].relative_to(root)}"
    return None


def ensure_manifest() -> str | None:
    """Build the manifest when it is out of date (one line says so); None when it is fresh afterwards,
    else one line naming the failure and the command that builds it.

    Built by ``python -m include.transform_group`` in a child process, the command ``make manifest`` and
    the image run: dbt's in-process state (its logging, adapters, a DuckDB handle) never stays in `up`.
    """
    reason = manifest_out_of_date(DBT_PROJECT_DIR, MANIFEST_PATH)
    if reason is None:
        return None
    print(f"building the dbt manifest: {reason} ...", flush=True)
    command = [sys.executable, "-m", "include.transform_group"]
    try:
        done = subprocess.run(
            command, cwd=DBT_PROJECT_DIR.parents[1], capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return f"the dbt manifest was not built within {BUILD_TIMEOUT_SECONDS:.0f} s; build it with {BUILD_COMMAND}"
    if done.returncode != 0:
        return f"the dbt manifest could not be built ({_failure(done)}); build it with {BUILD_COMMAND}"
    return None


def _failure(done: subprocess.CompletedProcess[str]) -> str:
    """The build's error on one line: from its last ``error:`` on (dbt's messages span lines), else its last line."""
    output = done.stderr.strip() or done.stdout.strip()
    start = output.rfind("error: ")
    message = output[start + len("error: ") :] if start >= 0 else (output.splitlines() or [""])[-1]
    return " ".join(message.split()) or f"status {done.returncode}"
