{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key=['symbol', 'open_time'],
    tmp_relation_type='transient'
) }}

{#- Rolled up from the non-empty minutes of candles_1m; the strategy and why: macros/candles.sql. -#}
{{ candles(900000000, 'minutes') }}
