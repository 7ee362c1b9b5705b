{#- None of the columns is null in any row: one query for many columns, where
    a not_null test per column would scan the model once each. The failures
    are the rows with a null. -#}
{% test not_null_columns(model, columns) %}

with

final as (

    select * from {{ model }}
    where
        {% for column in columns -%}
            {{ 'or ' if not loop.first }}{{ column }} is null
        {% endfor %}

)

select * from final

{% endtest %}
