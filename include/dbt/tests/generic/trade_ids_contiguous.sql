{#-
    Trade ids are sequential per symbol on the exchange: every gap between consecutive ids in the
    model is reported, unless each id in it is an exchange-side hole recorded by the repair ledger or
    a live gap fill (stg_trade_holes). Meant at severity warn: the stream's gaps are repaired later.
-#}
{% test trade_ids_contiguous(model) %}

with

holes as (

    select exchange, symbol, trade_id as id from {{ ref('stg_trade_holes') }}

),

steps as (

    select
        exchange,
        symbol,
        trade_id,
        lead(trade_id) over (partition by exchange, symbol order by trade_id) as next_id
    from {{ model }}

),

gaps as (

    select exchange, symbol, trade_id as before_gap, next_id as after_gap, next_id - trade_id - 1 as missing
    from steps
    where next_id > trade_id + 1

),

explained as (

    select gaps.exchange, gaps.symbol, gaps.before_gap, count(distinct holes.id) as hole_count
    from gaps
    inner join holes
        on holes.exchange = gaps.exchange
        and holes.symbol = gaps.symbol
        and holes.id > gaps.before_gap
        and holes.id < gaps.after_gap
    group by gaps.exchange, gaps.symbol, gaps.before_gap

),

final as (

    select gaps.*
    from gaps
    left join explained
        on explained.exchange = gaps.exchange
        and explained.symbol = gaps.symbol
        and explained.before_gap = gaps.before_gap
    where coalesce(explained.hole_count, 0) < gaps.missing

)

select * from final

{% endtest %}
