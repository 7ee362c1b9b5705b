{#- Every row satisfies the expression: the rows that do not are the
    failures. -#}
{% test expression_is_true(model, expression, column_name=none) %}

with

final as (

    select * from {{ model }} where not ({{ expression }})

)

select * from final

{% endtest %}
