"""The dbt project's SQL linter (sqlfluff, include/dbt/.sqlfluff; ``make lint`` runs it) fails what it
should, offline, with the project's macros; and no line of the project's SQL is longer than its limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlfluff.core import FluffConfig, Linter

from include.transform import DBT_PROJECT_DIR

MODEL = DBT_PROJECT_DIR / "models" / "marts" / "lint_probe.sql"  # never written: its config is the marts'

# A model in the project's style, calling its macros: what the linter must pass.
CLEAN = """with

hours as (

    select
        symbol,
        {{ bucket_start('trade_time', interval_length_us('1h')) }} as hour_open
    from {{ ref('stg_trades') }}

)

select * from hours
"""


@pytest.fixture(scope="module")
def config() -> FluffConfig:
    return FluffConfig.from_path(str(MODEL.parent))


def violations(config: FluffConfig, sql: str) -> list[str]:
    linted = Linter(config=config).lint_string(sql, fname=str(MODEL))
    return sorted({violation.rule_code() for violation in linted.get_violations()})


def test_a_model_in_the_projects_style_passes(config):
    assert violations(config, CLEAN) == []


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (("        symbol,", "        symbol, " + ", ".join(["quantity"] * 8) + ","), "LT05"),  # too long
        (("select * from hours", "SELECT * FROM hours"), "CP01"),  # keywords in capitals
        (("bucket_start(", "bucket_stat("), "TMP"),  # a macro the project does not have
    ],
)
def test_a_model_out_of_style_fails_naming_the_rule(config, change, rule):
    assert rule in violations(config, CLEAN.replace(*change))


def project_sql() -> list[Path]:
    built = {"target", "logs", "dbt_packages"}
    return [path for path in DBT_PROJECT_DIR.rglob("*.sql") if not built & set(path.relative_to(DBT_PROJECT_DIR).parts)]


def test_no_line_of_the_projects_sql_is_longer_than_the_linters_limit(config):
    """Macro bodies too: sqlfluff renders a file of macros to nothing, so its rule sees only the models."""
    limit = config.get("max_line_length")
    files = project_sql()
    assert len(files) > 20, files  # the models, tests and macros
    long = [
        f"{path.relative_to(DBT_PROJECT_DIR)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if len(line) > limit
    ]
    assert long == []
