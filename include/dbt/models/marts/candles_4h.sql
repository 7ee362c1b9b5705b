{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key=['symbol', 'open_time'],
    tmp_relation_type='transient'
) }}

{#- Rolled up from candles_1m (prices from its minutes with trades, completeness from all); the strategy
    and why: macros/candles.sql. -#}
{{ candles(14400000000, 'minutes') }}
