{#-
    The exchange-side holes: trade ids the exchange showed do not exist (REST
    answered a later id in their place), one row per id, from the repair's
    ledger and from the live gap fills alike.
-#}
{%- set key_columns = ['exchange', 'symbol', 'loaded_at'] -%}

with

completeness as (

    select
        exchange,
        symbol,
        loaded_at,
        holes
    from {{ ref('stg_completeness') }}
    where hole_count > 0

),

gap_fills as (

    select
        exchange,
        symbol,
        loaded_at,
        holes
    from {{ ref('stg_gap_fills') }}
    where hole_count > 0

),

holes as (

    {{ unnest_json_ids('completeness', key_columns, 'holes') }}

    union all

    {{ unnest_json_ids('gap_fills', key_columns, 'holes') }}

),

final as (

    select
        exchange,
        symbol,
        id as trade_id,
        max(loaded_at) as loaded_at
    from holes
    group by exchange, symbol, id

)

select * from final
