{#-
    Trade ids are sequential per symbol on the exchange: every gap between
    consecutive ids in the model is reported, unless each id in it is an
    exchange-side hole recorded by the repair ledger or a live gap fill
    (stg_trade_holes). Meant at severity warn: the stream's gaps are repaired
    later.
-#}
{% test trade_ids_contiguous(model) %}

with

holes as (

    select
        exchange,
        symbol,
        trade_id as id
    from {{ ref('stg_trade_holes') }}

),

steps as (

    select
        exchange,
        symbol,
        trade_id,
        lead(trade_id) over (
            partition by exchange, symbol order by trade_id
        ) as next_id
    from {{ model }}

),

gaps as (

    select
        exchange,
        symbol,
        trade_id as before_gap,
        next_id as after_gap,
        next_id - trade_id - 1 as missing
    from steps
    where next_id > trade_id + 1

),

explained as (

    select
        gaps.exchange,
        gaps.symbol,
        gaps.before_gap,
        count(distinct holes.id) as hole_count
    from gaps
    inner join holes
        on
            gaps.exchange = holes.exchange
            and gaps.symbol = holes.symbol
            and gaps.before_gap < holes.id
            and gaps.after_gap > holes.id
    group by gaps.exchange, gaps.symbol, gaps.before_gap

),

final as (

    select gaps.*
    from gaps
    left join explained
        on
            gaps.exchange = explained.exchange
            and gaps.symbol = explained.symbol
            and gaps.before_gap = explained.before_gap
    where coalesce(explained.hole_count, 0) < gaps.missing

)

select * from final

{% endtest %}
