{#- Each combination of the columns occurs at most once (a composite key). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

counted as (

    select {{ combination_of_columns | join(', ') }}, count(*) as occurrences
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}

),

final as (

    select * from counted where occurrences > 1

)

select * from final

{% endtest %}
