{#-
    Everything that differs between warehouses, dispatched per adapter, so the
    models and tests are the same SQL on all of them. Times are handled as
    integer microseconds since the epoch (UTC): exact, and bucketing is integer
    arithmetic aligned to the epoch, hence to 00:00 UTC for 1d.

    Each macro has a default__, in standard SQL where the standard has the
    means (Postgres runs them as they are), and a duckdb__ or snowflake__ one
    only where that warehouse needs another form.

    The snowflake__ macros are Snowflake SQL, run in the tests on fakesnow
    (Snowflake SQL translated to DuckDB); where fakesnow differs from
    Snowflake, the project uses a form valid on both:
    - fakesnow sums an uncast NUMBER as FLOAT: sum_decimal casts the argument
      (a no-op on Snowflake).
    - fakesnow cannot create a TEMPORARY table or view in a schema (DuckDB
      keeps them in its "temp" catalog), where dbt-snowflake's incremental
      models stage their new rows: the incremental models set
      tmp_relation_type='transient', a transient table dbt drops after the run
      (Snowflake's own option; its cost: the staged rows are written once,
      where a view would not be for stg_trades).
-#}

{#- The exact sum of decimals as decimal(38, scale). The argument is cast as
    well: fakesnow sums an uncast NUMBER as FLOAT, which would round a volume;
    Snowflake's SUM(NUMBER(38, s)) is already exact. -#}
{% macro sum_decimal(expression, scale) -%}
    cast(
        sum(cast({{ expression }} as decimal(38, {{ scale }})))
        as decimal(38, {{ scale }})
    )
{%- endmacro %}

{#- A timestamp with time zone as microseconds since the epoch (bigint). -#}
{% macro epoch_us(timestamp) -%}
    {{ return(adapter.dispatch('epoch_us', 'cryptoflow')(timestamp)) }}
{%- endmacro %}

{% macro default__epoch_us(timestamp) -%}
    cast(extract(epoch from {{ timestamp }}) * 1000000 as bigint)
{%- endmacro %}

{% macro duckdb__epoch_us(timestamp) -%}
    epoch_us({{ timestamp }})
{%- endmacro %}

{% macro snowflake__epoch_us(timestamp) -%}
    date_part(epoch_microsecond, {{ timestamp }})
{%- endmacro %}

{#- The type of a timestamp with time zone, for a typed null. -#}
{% macro timestamp_type() -%}
    {{ return(adapter.dispatch('timestamp_type', 'cryptoflow')()) }}
{%- endmacro %}

{% macro default__timestamp_type() -%}
    timestamp with time zone
{%- endmacro %}

{% macro snowflake__timestamp_type() -%}
    timestamp_tz
{%- endmacro %}

{#- When the statement building a model started, by the warehouse's clock (the
    clock the load stamps loaded_at with, so the two compare): the marts'
    built_at. Standard SQL, the same on every warehouse. -#}
{% macro build_time() -%}
    cast(current_timestamp as {{ timestamp_type() }})
{%- endmacro %}

{#- Microseconds since the epoch as a timestamp with time zone (UTC). -#}
{% macro from_epoch_us(microseconds) -%}
    {{ return(adapter.dispatch('from_epoch_us', 'cryptoflow')(microseconds)) }}
{%- endmacro %}

{% macro default__from_epoch_us(microseconds) -%}
    {{ add_us(
        "cast('1970-01-01 00:00:00+00:00' as " ~ timestamp_type() ~ ")",
        microseconds
    ) }}
{%- endmacro %}

{% macro duckdb__from_epoch_us(microseconds) -%}
    make_timestamptz(cast({{ microseconds }} as bigint))
{%- endmacro %}

{% macro snowflake__from_epoch_us(microseconds) -%}
    convert_timezone(
        'UTC', to_timestamp_tz(cast({{ microseconds }} as number(38, 0)), 6)
    )
{%- endmacro %}

{#- A timestamp plus a number of microseconds (negative to go back). -#}
{% macro add_us(timestamp, microseconds) -%}
    {{ return(
        adapter.dispatch('add_us', 'cryptoflow')(timestamp, microseconds)
    ) }}
{%- endmacro %}

{% macro default__add_us(timestamp, microseconds) -%}
    ({{ timestamp }} + interval '1 microsecond' * ({{ microseconds }}))
{%- endmacro %}

{#- DuckDB multiplies an interval by a 32-bit integer only. -#}
{% macro duckdb__add_us(timestamp, microseconds) -%}
    ({{ timestamp }} + to_microseconds(cast({{ microseconds }} as bigint)))
{%- endmacro %}

{% macro snowflake__add_us(timestamp, microseconds) -%}
    dateadd(microsecond, {{ microseconds }}, {{ timestamp }})
{%- endmacro %}

{#- The open time of the bucket of width interval_us (epoch-aligned, UTC) that
    holds a timestamp. -#}
{% macro bucket_start(timestamp, interval_us) -%}
    {{ return(
        adapter.dispatch('bucket_start', 'cryptoflow')(timestamp, interval_us)
    ) }}
{%- endmacro %}

{% macro default__bucket_start(timestamp, interval_us) -%}
    {%- set since_epoch = epoch_us(timestamp) -%}
    {{ from_epoch_us(
        since_epoch ~ ' - mod(' ~ since_epoch ~ ', ' ~ interval_us ~ ')'
    ) }}
{%- endmacro %}

{#- The same arithmetic without a round trip through the timestamp functions:
    this runs once per trade. -#}
{% macro duckdb__bucket_start(timestamp, interval_us) -%}
    make_timestamptz(
        epoch_us({{ timestamp }})
        - epoch_us({{ timestamp }}) % {{ interval_us }}
    )
{%- endmacro %}

{#-
    One row per bucket open time from each span's first_open to its last_open
    (both included), in steps of interval_us: `select <columns>, open_time from
    <spans>` expanded. spans is a relation or CTE with the columns named, plus
    first_open and last_open (timestamps).
-#}
{% macro bucket_series(spans, columns, interval_us) -%}
    {{ return(adapter.dispatch('bucket_series', 'cryptoflow')(
        spans, columns, interval_us
    )) }}
{%- endmacro %}

{#- A recursive query: one step per bucket. -#}
{% macro default__bucket_series(spans, columns, interval_us) -%}
    with recursive steps as (
        select
            {% for column in columns %}{{ column }}, {% endfor %}
            first_open as open_time,
            last_open
        from {{ spans }}
        union all
        select
            {% for column in columns %}{{ column }}, {% endfor %}
            {{ add_us('open_time', interval_us) }} as open_time,
            last_open
        from steps
        where open_time < last_open
    )

    select {{ columns | join(', ') }}, open_time from steps
{%- endmacro %}

{% macro duckdb__bucket_series(spans, columns, interval_us) -%}
    select {{ columns | join(', ') }}, make_timestamptz(open_us) as open_time
    from (
        select
            {{ columns | join(', ') }},
            unnest(generate_series(
                epoch_us(first_open), epoch_us(last_open), {{ interval_us }}
            )) as open_us
        from {{ spans }}
    )
{%- endmacro %}

{% macro snowflake__bucket_series(spans, columns, interval_us) -%}
    {%- set steps = (
        '(' ~ epoch_us('spans.last_open') ~ ' - '
        ~ epoch_us('spans.first_open') ~ ') / ' ~ interval_us
    ) -%}
    select
        {% for column in columns %}spans.{{ column }}, {% endfor %}
        {{ add_us(
            'spans.first_open',
            'cast(steps.value as number(38, 0)) * ' ~ interval_us
        ) }} as open_time
    from {{ spans }} as spans,
        lateral flatten(input => array_generate_range(
            0, cast({{ steps }} as number(38, 0)) + 1
        )) as steps
{%- endmacro %}

{#- One row per id of a JSON list of integers held as text: `select <key
    columns>, id from <relation>`. -#}
{% macro unnest_json_ids(relation, key_columns, json_column) -%}
    {{ return(adapter.dispatch('unnest_json_ids', 'cryptoflow')(
        relation, key_columns, json_column
    )) }}
{%- endmacro %}

{#- SQL:2016's JSON_TABLE (Postgres 17, MySQL 8, Oracle). -#}
{% macro default__unnest_json_ids(relation, key_columns, json_column) -%}
    select
        {% for column in key_columns %}source_rows.{{ column }}, {% endfor %}
        ids.id
    from {{ relation }} as source_rows,
        json_table(
            source_rows.{{ json_column }}, '$[*]' columns (id bigint path '$')
        ) as ids
{%- endmacro %}

{% macro duckdb__unnest_json_ids(relation, key_columns, json_column) -%}
    select
        {{ key_columns | join(', ') }},
        unnest(from_json({{ json_column }}, '["BIGINT"]')) as id
    from {{ relation }}
{%- endmacro %}

{% macro snowflake__unnest_json_ids(relation, key_columns, json_column) -%}
    select
        {% for column in key_columns %}source_rows.{{ column }}, {% endfor %}
        cast(ids.value as bigint) as id
    from {{ relation }} as source_rows,
        lateral flatten(
            input => parse_json(source_rows.{{ json_column }})
        ) as ids
{%- endmacro %}
