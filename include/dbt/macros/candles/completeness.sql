{#-
    The completeness of 1m buckets by trade id (docs/architecture.md, "The
    live edge", part 1): the CTEs between candles_1m's `series` (its buckets)
    and `completed`.

    Binance's trade ids are consecutive per symbol, so what is missing is
    known from the ids. Per symbol, what is known of its ids, in id order (the
    elements):
    - each bucket's trades, as one element: ids first..last at times
      first..last. Ids missing between them (fewer trades than ids) are
      counted apart: such a gap touches that bucket only;
    - the last trade before the recomputed range (from the kept buckets:
      seed), so that a span reaching back before the range is seen;
    - each anchor, "the first trade at or after T is X" (stg_trade_anchors):
      every id below X is before T, so at T - 1 µs at the latest, and X is at
      T or later. An anchor is a bound, not a trade: X - 1 and X are missing
      until trades with them are loaded. (Counting them present, a bucket
      after T would be complete while trade X, at or after T, is not in the
      lake.)
    Between consecutive elements, the ids above everything before and below
    the next element are missing, unless they are exchange-side holes
    (stg_trade_holes); missing ids make a span from the latest time before
    them to the time of the element after them. A bucket [s, e) is complete
    when an element tells of a time before s (known_from < s: the last trade
    before it is known), no span touches it, and, if it is closed or has no
    trade, an element tells of a time at or after e (known_until >= e: the
    first trade after it is known). An empty bucket is complete only if the
    close it carries is known too: no id is missing between the last trade
    before it and its end (empty_minute_completeness follows that back to the
    last bucket with a trade: `touched.after_last_trade`, and `seed_state`
    for the kept bucket before the range). Times grow with ids (Binance's ids
    are sequential in time), so the first and last times of a symbol's
    elements are all that the before and after conditions need.

    It reads the range's buckets (an aggregate of the trades, computed for
    the candles anyway), the seed, the symbol's anchors and holes (small
    tables), never a trade twice: the cost of a build stays that of its range.
-#}

{#- The CTEs `anchors`, `elements`, `steps`, `gaps`, `spans`, `known`,
    `touched` and `seed_state`: what is known of each symbol's ids, and the
    buckets that missing ids touch. -#}
{% macro trade_id_completeness(interval_us) -%}
anchors as (

    -- the anchors of the symbols being built, past the last trade before the
    -- range
    select
        anchors.symbol,
        anchors.trade_id,
        anchors.anchor_time
    from {{ ref('stg_trade_anchors') }} as anchors
    inner join recompute_from on anchors.symbol = recompute_from.symbol
    left join seed on anchors.symbol = seed.symbol
    where seed.last_trade_id is null or anchors.trade_id > seed.last_trade_id

),

elements as (

    -- position: the order by id (an anchor between X - 1 and X); id_before
    -- and id_after: the last id below the element and the first above it;
    -- starts_at and ends_at: the times the ids below it are no later than,
    -- and the ids above it no earlier than
    select
        symbol,
        2 * first_trade_id as position,
        first_trade_id - 1 as id_before,
        last_trade_id + 1 as id_after,
        first_trade_time as starts_at,
        last_trade_time as ends_at
    from buckets

    union all

    select
        symbol,
        2 * last_trade_id as position,
        last_trade_id - 1 as id_before,
        last_trade_id + 1 as id_after,
        last_trade_time as starts_at,
        last_trade_time as ends_at
    from seed
    where last_trade_id is not null

    union all

    select
        symbol,
        2 * trade_id - 1 as position,
        trade_id - 1 as id_before,
        trade_id as id_after,
        {{ add_us('anchor_time', -1) }} as starts_at,
        anchor_time as ends_at
    from anchors

),

steps as (

    -- before each element: the first id above every element before it, and
    -- the latest time they tell of
    select
        elements.*,
        max(id_after) over (
            partition by symbol
            order by position, ends_at
            rows between unbounded preceding and 1 preceding
        ) as first_unknown_id,
        max(ends_at) over (
            partition by symbol
            order by position, ends_at
            rows between unbounded preceding and 1 preceding
        ) as unknown_from
    from elements

),

gaps as (

    -- ids missing between elements
    select
        symbol,
        first_unknown_id as first_id,
        id_before as last_id,
        id_before - first_unknown_id + 1 as missing,
        unknown_from as gap_from,
        starts_at as gap_until
    from steps
    where id_before >= first_unknown_id

    union all

    -- ids missing inside a bucket, between its first and last trade
    select
        symbol,
        first_trade_id + 1 as first_id,
        last_trade_id - 1 as last_id,
        last_trade_id - first_trade_id + 1 - trade_count as missing,
        first_trade_time as gap_from,
        last_trade_time as gap_until
    from buckets
    where last_trade_id - first_trade_id + 1 > trade_count

),

spans as (

    -- the gaps that exchange-side holes do not explain
    select
        gaps.symbol,
        gaps.first_id,
        gaps.gap_from,
        gaps.gap_until
    from gaps
    left join {{ ref('stg_trade_holes') }} as holes
        on
            gaps.symbol = holes.symbol
            and gaps.first_id <= holes.trade_id
            and gaps.last_id >= holes.trade_id
    group by
        gaps.symbol,
        gaps.first_id,
        gaps.last_id,
        gaps.missing,
        gaps.gap_from,
        gaps.gap_until
    having count(distinct holes.trade_id) < gaps.missing

),

known as (

    -- per symbol, the earliest and the latest time its elements tell of
    select
        symbol,
        min(starts_at) as known_from,
        max(ends_at) as known_until
    from elements
    group by symbol

),

touched as (

    -- the buckets a span touches (span [a, b] meets bucket [s, e) when a < e
    -- and b >= s), and whether one with ids above the bucket's last trade
    -- does (then its close may not be the last trade before its end); for an
    -- empty bucket, any span
    select
        series.symbol,
        series.open_time,
        max(
            case
                when
                    buckets.last_trade_id is null
                    or spans.first_id > buckets.last_trade_id
                    then 1
                else 0
            end
        ) = 1 as after_last_trade
    from series
    inner join spans
        on
            series.symbol = spans.symbol
            and spans.gap_from < {{ add_us('series.open_time', interval_us) }}
            and series.open_time <= spans.gap_until
    left join buckets
        on
            series.symbol = buckets.symbol
            and series.open_time = buckets.open_time
    group by series.symbol, series.open_time

),

seed_state as (

    -- whether the close carried in from the kept bucket before the range is
    -- the last trade before the range: an empty kept bucket says so itself
    -- (is_complete); one with trades, when no span with ids above its last
    -- trade touches it (that span would start before the range)
    select
        seed.symbol,
        case
            when seed.trade_count > 0 then count(spans.symbol) = 0
            else coalesce(seed.is_complete, false)
        end as close_known
    from seed
    inner join recompute_from on seed.symbol = recompute_from.symbol
    left join spans
        on
            seed.symbol = spans.symbol
            and seed.last_trade_id < spans.first_id
            and recompute_from.first_open > spans.gap_from
    group by seed.symbol, seed.trade_count, seed.is_complete

),
{%- endmacro %}

{#- The CTEs `joined`, `judged` and `carrying`: each bucket of the series with
    its trades, whether it is complete by id (`ids_complete`), and whether its
    close is the last trade before its end (`carries_close`). -#}
{% macro minute_completeness(interval_us) -%}
joined as (

    select
        {{ series_columns(interval_us) }},
        coalesce(known.known_from < series.open_time, false) as known_before,
        coalesce(
            known.known_until >= {{ add_us('series.open_time', interval_us) }},
            false
        ) as known_after,
        touched.symbol is not null as has_missing_ids,
        coalesce(touched.after_last_trade, false)
            as has_missing_ids_after_last_trade
    from series
    left join buckets
        on
            series.symbol = buckets.symbol
            and series.open_time = buckets.open_time
    left join known on series.symbol = known.symbol
    left join touched
        on
            series.symbol = touched.symbol
            and series.open_time = touched.open_time

),

judged as (

    -- the last trade before it is known, no id is missing around it, and
    -- unless it is the forming bucket with a trade (complete up to its last
    -- trade so far), the first trade after it is known
    select
        joined.*,
        known_before
        and not has_missing_ids
        and (known_after or (trade_count is not null and not is_closed))
            as ids_complete
    from joined

),

carrying as (

    -- whether the bucket's close is the last trade before its end: with a
    -- trade, when no id above its last trade is missing in it; empty, when
    -- it is complete by id (and the bucket before carries)
    select
        judged.*,
        case
            when trade_count is not null
                then not has_missing_ids_after_last_trade
            else ids_complete
        end as carries_close
    from judged

),
{%- endmacro %}

{#- The CTE `completed`: a bucket with trades is complete when complete by id;
    an empty one when the close it carries is known, back to the last bucket
    with a trade. -#}
{% macro empty_minute_completeness() -%}
completed as (

    select
        carried.*,
        case
            when carried.trade_count is not null then carried.ids_complete
            else
                carried.ids_complete
                and min(
                    case when carried.carries_close then 1 else 0 end
                ) over (
                    partition by carried.symbol, carried.carry_group
                    order by carried.open_time
                    rows between unbounded preceding and current row
                ) = 1
                and (
                    carried.carry_group > 0
                    or coalesce(seed_state.close_known, false)
                )
                and carried.carried_close is not null
        end as is_complete
    from carried
    left join seed_state on carried.symbol = seed_state.symbol

),
{%- endmacro %}
