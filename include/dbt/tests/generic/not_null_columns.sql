{#- None of the columns is null in any row (of `rows`: macros/tested_rows.sql):
    one query for many columns, where a not_null test per column would scan
    the model once each. The failures are the rows with a null. -#}
{% test not_null_columns(model, columns, rows='all') %}

with

final as (

    select * from {{ tested_rows(model, rows) }} as tested
    where
        {% for column in columns -%}
            {{ 'or ' if not loop.first }}{{ column }} is null
        {% endfor %}

)

select * from final

{% endtest %}
