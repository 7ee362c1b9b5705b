{#- Per symbol and hour, the volume of candles_1m is the volume of stg_trades:
    no trade is lost or counted twice between staging and the marts. It reads
    every trade: nightly (include/transform.py). -#}
{{ config(tags=['nightly']) }}
{%- set hour_us = interval_length_us('1h') -%}

with

trade_hours as (

    select
        symbol,
        {{ bucket_start('trade_time', hour_us) }} as hour_open,
        {{ sum_decimal('quantity', 8) }} as volume
    from {{ ref('stg_trades') }}
    group by 1, 2

),

candle_hours as (

    select
        symbol,
        {{ bucket_start('open_time', hour_us) }} as hour_open,
        {{ sum_decimal('volume', 8) }} as volume
    from {{ ref('candles_1m') }}
    group by 1, 2

),

final as (

    select
        trade_hours.volume as trade_volume,
        candle_hours.volume as candle_volume,
        coalesce(trade_hours.symbol, candle_hours.symbol) as symbol,
        coalesce(trade_hours.hour_open, candle_hours.hour_open) as hour_open
    from trade_hours
    full outer join candle_hours
        on
            trade_hours.symbol = candle_hours.symbol
            and trade_hours.hour_open = candle_hours.hour_open
    where coalesce(trade_hours.volume, 0) <> coalesce(candle_hours.volume, 0)

)

select * from final
