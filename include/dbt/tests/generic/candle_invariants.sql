{#- Binance's kline invariants and the completeness rules, all in one query
    (one test per mart, where a test per invariant would read the mart once
    each). The failures are the candles (of `rows`: macros/tested_rows.sql)
    that break one; `broken` says which. A null in a column that is never
    null is not judged here: not_null_columns fails it. -#}
{% test candle_invariants(model, rows='all') %}

with

checked as (

    select
        *,
        case
            when
                (open is null or high is null or low is null or close is null)
                != (trade_count = 0 and not is_complete)
                then
                    'prices null on a complete or non-empty candle,'
                    || ' or present on an incomplete empty one'
            when low > least(open, close) then 'low above open or close'
            when high < greatest(open, close) then 'high below open or close'
            when
                volume < 0
                or quote_volume < 0
                or taker_buy_volume < 0
                or taker_buy_quote_volume < 0
                then 'a negative volume'
            when
                taker_buy_volume > volume
                or taker_buy_quote_volume > quote_volume
                then 'taker buy volume above the volume'
            when trade_count < 0 then 'a negative trade count'
            when (trade_count = 0) != (volume = 0)
                then 'trade_count and volume disagree on emptiness'
            when
                trade_count = 0
                and is_complete
                and not (open = high and high = low and low = close)
                then
                    'a complete empty candle that is not flat at the previous'
                    || ' close'
            when
                (trade_count = 0) != (first_trade_id is null)
                or (trade_count = 0) != (last_trade_id is null)
                or (trade_count = 0) != (last_trade_time is null)
                then
                    'trade ids and time present on an empty candle,'
                    || ' or missing on one with trades'
            when last_trade_id - first_trade_id + 1 < trade_count
                then 'more trades than trade ids'
        end as broken
    from {{ tested_rows(model, rows) }} as tested

),

final as (

    select * from checked where broken is not null

)

select * from final

{% endtest %}
