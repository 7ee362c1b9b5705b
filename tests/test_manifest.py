"""When the dbt manifest must be rebuilt: missing, or older than any source of the project (no dbt run here)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from include.manifest import manifest_out_of_date
from include.transform import DBT_PROJECT_DIR

BUILT_NS = 1_700_000_000 * 10**9  # when the copy's manifest was "built"; every source is set before it


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the dbt project at include/dbt under tmp_path, with a manifest newer than every source."""
    copy = tmp_path / "include" / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    for path in copy.rglob("*"):
        os.utime(path, ns=(BUILT_NS - 10**9, BUILT_NS - 10**9))
    manifest = copy / "target" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text("{}")
    os.utime(manifest, ns=(BUILT_NS, BUILT_NS))
    return copy


def touch_after_build(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, ns=(BUILT_NS + 10**9, BUILT_NS + 10**9))


def test_a_manifest_newer_than_every_source_is_fresh(project):
    assert manifest_out_of_date(project) is None


def test_a_missing_manifest_is_out_of_date(project):
    (project / "target" / "manifest.json").unlink()
    assert manifest_out_of_date(project) == "include/dbt/target/manifest.json is missing"


@pytest.mark.parametrize(
    "source",
    ["models/marts/candles_1m.sql", "macros/candles/rollup.sql", "models/staging/_sources.yml", "dbt_project.yml"],
)
def test_a_manifest_older_than_a_source_is_out_of_date_and_names_it(project, source):
    touch_after_build(project / source)
    assert manifest_out_of_date(project) == f"include/dbt/target/manifest.json is older than include/dbt/{source}"


def test_a_new_source_file_makes_it_out_of_date(project):
    touch_after_build(project / "models" / "marts" / "candles_2h.sql")
    assert "candles_2h.sql" in (manifest_out_of_date(project) or "")


@pytest.mark.parametrize(
    "written_by_dbt", ["target/run_results.json", "target/compiled/x.sql", "logs/dbt.log", "dbt_packages/p/m.sql"]
)
def test_what_dbt_writes_into_the_project_does_not_make_it_stale(project, written_by_dbt):
    touch_after_build(project / written_by_dbt)
    assert manifest_out_of_date(project) is None
