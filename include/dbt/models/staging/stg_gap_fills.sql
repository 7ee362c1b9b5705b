with

source as (

    select * from {{ source('raw', 'gap_fills') }}

),

final as (

    select
        exchange,
        symbol,
        first_id,
        last_id,
        since,
        filled,
        holes,
        hole_count,
        missing,
        checked_at,
        loaded_at
    from source

)

select * from final
