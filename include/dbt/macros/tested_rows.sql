{#-
    The rows a data test reads, by its `rows` argument (tests/generic/), as a
    subquery for the test to alias:
    - 'all': every row of the model. The marts' tests of every row are tagged
      nightly (models/marts/_marts.yml): they read the whole history, so the
      nightly reconcile runs them (include/transform.py).
    - 'rebuilt': the rows the model's last build wrote, those with its newest
      built_at (a build stamps every row it writes with its start:
      candle_columns in candles.sql). The build after each micro-batch tests
      these, so its tests cost what it rebuilt, not the history. DuckDB turns
      the newest built_at into a filter on the scan and skips the row groups
      of older builds; the build appends its rows, so they are few.
-#}
{% macro tested_rows(model, rows) -%}
    {%- if rows == 'all' -%}
        (select * from {{ model }})
    {%- elif rows == 'rebuilt' -%}
        (
            select * from {{ model }}
            where built_at = (select max(built_at) from {{ model }})
        )
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "tested_rows: rows=" ~ rows ~ " is neither 'all' nor 'rebuilt'"
        ) }}
    {%- endif -%}
{%- endmacro %}
