{#- Binance's kline invariants, all in one query (one test per mart, where a test per invariant would
    read the mart once each). The failures are the candles that break one; `broken` says which.
    A null is not judged here: not_null_columns fails it. -#}
{% test candle_invariants(model) %}

with

checked as (

    select
        *,
        case
            when low > least(open, close) then 'low above open or close'
            when high < greatest(open, close) then 'high below open or close'
            when volume < 0 or quote_volume < 0 or taker_buy_volume < 0 or taker_buy_quote_volume < 0
                then 'a negative volume'
            when taker_buy_volume > volume or taker_buy_quote_volume > quote_volume
                then 'taker buy volume above the volume'
            when trade_count < 0 then 'a negative trade count'
            when (trade_count = 0) != (volume = 0) then 'trade_count and volume disagree on emptiness'
            when trade_count = 0 and not (open = high and high = low and low = close)
                then 'an empty candle that is not flat at the previous close'
        end as broken
    from {{ model }}

),

final as (

    select * from checked where broken is not null

)

select * from final

{% endtest %}
