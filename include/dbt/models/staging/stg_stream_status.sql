with

source as (

    select * from {{ source('raw', 'stream_status') }}

),

final as (

    select
        exchange,
        symbol,
        updated_at,
        last_trade_id,
        last_trade_time,
        lag_seconds,
        loaded_at
    from source

)

select * from final
