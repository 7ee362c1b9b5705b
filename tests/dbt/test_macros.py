"""The project's macros compiled by dbt and run on DuckDB: the interval lengths the marts derive from
their names, and the default__ SQL of the dispatched macros against DuckDB's own.

The default__ forms are what a warehouse without its own implementation runs (macros/dialect.sql);
DuckDB runs all of them but unnest_json_ids's (SQL:2016 JSON_TABLE, which DuckDB lacks), so each is
checked there against the value it must give. One ``dbt compile --inline`` per test, in its own folder.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import duckdb
import pytest

from include.candles import INTERVALS
from include.config import load_settings
from include.transform import dbt_args, dbt_environment

# Microseconds since the epoch: the epoch, a µs after it, the edges of a minute, and 2026's first day.
SAMPLES_US = (0, 1, 59_999_999, 60_000_000, 1_767_225_600_123_457, 1_767_311_999_999_999)
HOUR_US = 3_600_000_000


def compile_inline(sql: str, folder: Path) -> tuple[bool, str]:
    """``dbt compile --inline`` on a DuckDB target in ``folder``: (success, the SQL or dbt's error)."""
    from dbt.cli.main import dbtRunner

    settings = load_settings({"DUCKDB_PATH": str(folder / "unused.duckdb"), "WAREHOUSE": "duckdb"})
    args = [*dbt_args(settings, "compile", target_dir=folder / "dbt"), "--inline", sql, "--quiet"]
    with mock.patch.dict(os.environ, dbt_environment(settings)):
        outcome = dbtRunner().invoke([*args, "--no-populate-cache"])
    if not outcome.success:  # dbt's own error, then the compile error it wraps
        error = outcome.exception
        return False, f"{error} ({error.__context__})"
    return True, outcome.result.results[0].node.compiled_code


def run_inline(sql: str, folder: Path) -> list[tuple]:
    compiled, code = compile_inline(sql, folder)
    assert compiled, code
    with duckdb.connect() as connection:
        return connection.execute(code).fetchall()


def test_each_interval_length_comes_from_its_name_as_include_candles_has_it(tmp_path):
    lengths = ", ".join(f"{{{{ interval_length_us('{interval.name}') }}}}" for interval in INTERVALS)
    (row,) = run_inline(f"select {lengths}", tmp_path)
    assert list(row) == [interval.length_us for interval in INTERVALS]


@pytest.mark.parametrize("name", ["7x", "0m", "m", "1.5h"])
def test_a_name_that_is_no_interval_fails_the_compile_naming_it(tmp_path, name):
    compiled, error = compile_inline(f"select {{{{ candles('{name}') }}}}", tmp_path)
    assert not compiled
    assert f"candles: {name} is not an interval" in error


DEFAULTS = """
with

samples as (

    select
        us,
        {{ from_epoch_us('us') }} as ts
    from (values {samples}) as samples (us)

),

spans as (

    select
        'a' as symbol,
        {{ from_epoch_us(0) }} as first_open,
        {{ from_epoch_us(5 * hour_us) }} as last_open

)

select
    us,
    {{ default__epoch_us('ts') }} as epoch_us,
    {{ default__from_epoch_us('us') }} as from_epoch_us,
    {{ default__add_us('ts', -1000000) }} as a_second_before,
    {{ default__bucket_start('ts', hour_us) }} as hour_open,
    typeof(cast(null as {{ default__timestamp_type() }})) as null_type,
    (select list(open_time order by open_time) from (
        {{ default__bucket_series('spans', ['symbol'], hour_us) }}
    )) as hours
from samples
order by us
"""


def test_the_default_dialect_macros_give_the_exact_values(tmp_path):
    """Each default__ macro, compiled and run: the value it must give, to the microsecond. add_us by a
    second: DuckDB multiplies an interval by a 32-bit integer only (hence its duckdb__add_us)."""
    samples = ", ".join(f"({us})" for us in SAMPLES_US)
    sql = "{%- set hour_us = " + str(HOUR_US) + " -%}" + DEFAULTS.replace("{samples}", samples)
    rows = run_inline(sql, tmp_path)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert [row[0] for row in rows] == sorted(SAMPLES_US)
    for us, epoch_us, from_epoch_us, a_second_before, hour_open, null_type, hours in rows:
        ts = epoch + timedelta(microseconds=us)
        assert epoch_us == us
        assert from_epoch_us == ts
        assert a_second_before == ts - timedelta(seconds=1)
        assert hour_open == epoch + timedelta(microseconds=us - us % HOUR_US)
        assert null_type == "TIMESTAMP WITH TIME ZONE"
        assert hours == [epoch + timedelta(hours=hour) for hour in range(6)]
