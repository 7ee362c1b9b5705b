"""dbt's ``adapter.dispatch`` for sqlfluff's jinja templater (.sqlfluff: library_path).

The templater renders the project without dbt and without a warehouse. A dispatched macro renders as
the DuckDB implementation, or the default one where DuckDB has none: what dbt picks for the
``duckdb`` target, whose dialect the linter parses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.runtime import Context

SEARCH_ORDER = ("duckdb__", "default__")


@jinja2.pass_context
def dispatch(context: Context, macro_name: str, macro_namespace: str | None = None) -> Callable[..., Any]:
    """The macro dbt would call for ``macro_name`` on DuckDB, from the macros sqlfluff loaded."""
    for prefix in SEARCH_ORDER:
        macro = context.resolve_or_missing(prefix + macro_name)
        if macro is not jinja2.runtime.missing:
            return macro
    raise LookupError(f"no {' or '.join(prefix + macro_name for prefix in SEARCH_ORDER)} macro")
