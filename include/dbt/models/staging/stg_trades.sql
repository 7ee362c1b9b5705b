{#-
    One row per (exchange, symbol, trade_id). Incremental on loaded_at, never on trade time: a
    backfill loads old trades late. Every row of one load commit shares its loaded_at, and a load
    commits atomically, so "later than the newest loaded_at seen" misses nothing. A trade loaded
    again (overlapping stream windows, a stream and its backfill) is dropped: within the new rows
    by keeping the first loaded, and against earlier runs by the anti-join on the key.
-#}
{{ config(materialized='incremental', incremental_strategy='append', tmp_relation_type='transient') }}

with

source as (

    select * from {{ source('raw', 'trades') }}
    {% if is_incremental() %}
    where loaded_at > (select coalesce(max(loaded_at), {{ cryptoflow.from_epoch_us(0) }}) from {{ this }})
    {% endif %}

),

first_delivery as (

    select *
    from source
    qualify row_number() over (
        partition by exchange, symbol, trade_id order by loaded_at, source, ingested_at
    ) = 1

),

new_trades as (

    select first_delivery.*
    from first_delivery
    {% if is_incremental() %}
    where not exists (
        select 1
        from {{ this }} as kept
        where kept.exchange = first_delivery.exchange
            and kept.symbol = first_delivery.symbol
            and kept.trade_id = first_delivery.trade_id
    )
    {% endif %}

),

final as (

    select
        exchange,
        symbol,
        trade_id,
        price,
        quantity,
        quote_quantity,
        trade_time,
        is_buyer_maker,
        source,
        ingested_at,
        loaded_at
    from new_trades

)

select * from final
