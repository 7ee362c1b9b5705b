{#-
    What the exchange told us of where trade ids fall in time: "the first
    trade at or after anchor_time is trade_id" (docs/architecture.md, "The
    live edge"). From the repair's ledger, each window's two ends ([first_id,
    end_id) are its expected ids), and from the live gap fills, the `since` of
    a start gap. Two adjacent windows name the same anchor: it is one row.
-#}
with

completeness as (

    select * from {{ ref('stg_completeness') }}

),

gap_fills as (

    select * from {{ ref('stg_gap_fills') }}

),

anchors as (

    select
        exchange,
        symbol,
        window_start as anchor_time,
        first_id as trade_id,
        loaded_at
    from completeness
    where first_id is not null

    union all

    select
        exchange,
        symbol,
        window_end as anchor_time,
        end_id as trade_id,
        loaded_at
    from completeness
    where end_id is not null

    union all

    select
        exchange,
        symbol,
        since as anchor_time,
        first_id as trade_id,
        loaded_at
    from gap_fills
    where since is not null

),

final as (

    select
        exchange,
        symbol,
        anchor_time,
        trade_id,
        max(loaded_at) as loaded_at
    from anchors
    group by exchange, symbol, anchor_time, trade_id

)

select * from final
