{#- Each combination of the columns occurs at most once (a composite key).
    With rows='rebuilt' (macros/tested_rows.sql), each key of the rebuilt rows
    is counted over the whole model: a row the build left in place with the
    key of a rebuilt one is a duplicate too. Only the rows with those keys are
    counted (an EXISTS, which DuckDB turns into a filter on the scan). -#}
{% test unique_combination_of_columns(
    model, combination_of_columns, rows='all'
) %}

with

counted as (

    select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
    from {{ tested_rows(model, 'all') }} as candidates
    {% if rows != 'all' -%}
        where exists (
            select 1
            from {{ tested_rows(model, rows) }} as tested
            where
                {% for column in combination_of_columns -%}
                    {{ 'and ' if not loop.first -}}
                    tested.{{ column }} = candidates.{{ column }}
                {% endfor %}
        )
    {%- endif %}
    group by {{ combination_of_columns | join(', ') }}

),

final as (

    select * from counted where occurrences > 1

)

select * from final

{% endtest %}
