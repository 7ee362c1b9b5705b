{#-
    One row per (exchange, symbol, trade_id). Incremental on loaded_at, never
    on trade time: a backfill loads old trades late. Every row of one load
    commit shares its loaded_at, and a load commits atomically, so "later than
    the newest loaded_at seen" misses nothing. A trade loaded again
    (overlapping stream windows, a stream and its backfill) is dropped: within
    the new rows by keeping the first loaded, and against earlier runs by the
    anti-join on the key.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    tmp_relation_type='transient'
) }}

with

source as (

    select * from {{ source('raw', 'trades') }}
    {% if is_incremental() %}
        where
            loaded_at > (
                select coalesce(max(kept.loaded_at), {{ from_epoch_us(0) }})
                from {{ this }} as kept
            )
    {% endif %}

),

repeated_keys as (

    -- the keys delivered more than once: only their rows are ranked, the rest
    -- pass as they are (ranking every row costs as much again as writing
    -- them, at ten million rows)
    select
        exchange,
        symbol,
        trade_id
    from source
    group by exchange, symbol, trade_id
    having count(*) > 1

),

delivered_once as (

    select source.*
    from source
    where not exists (
        select 1
        from repeated_keys
        where
            source.exchange = repeated_keys.exchange
            and source.symbol = repeated_keys.symbol
            and source.trade_id = repeated_keys.trade_id
    )

),

first_of_repeated as (

    select source.*
    from source
    inner join repeated_keys
        on
            source.exchange = repeated_keys.exchange
            and source.symbol = repeated_keys.symbol
            and source.trade_id = repeated_keys.trade_id
    qualify row_number() over (
        partition by source.exchange, source.symbol, source.trade_id
        order by source.loaded_at, source.source, source.ingested_at
    ) = 1

),

first_delivery as (

    select * from delivered_once
    union all
    select * from first_of_repeated

),

new_trades as (

    select first_delivery.*
    from first_delivery
    {% if is_incremental() %}
        where not exists (
            select 1
            from {{ this }} as kept
            -- a trade's time never changes, so a copy kept earlier is no
            -- older than the oldest new row: this bound lets DuckDB skip the
            -- row groups of older trades instead of reading every key
            where
                kept.trade_time >= (
                    select min(oldest.trade_time)
                    from first_delivery as oldest
                )
                and first_delivery.exchange = kept.exchange
                and first_delivery.symbol = kept.symbol
                and first_delivery.trade_id = kept.trade_id
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
