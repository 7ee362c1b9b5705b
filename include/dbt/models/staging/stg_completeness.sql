with

source as (

    select * from {{ source('raw', 'completeness') }}

),

final as (

    select
        exchange,
        symbol,
        window_start,
        window_end,
        first_id,
        end_id,
        expected,
        present_before,
        filled,
        holes,
        hole_count,
        refused_count,
        missing,
        checked_at,
        loaded_at,
        missing = 0 as is_complete
    from source

)

select * from final
