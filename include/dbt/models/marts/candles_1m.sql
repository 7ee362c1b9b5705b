{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key=['symbol', 'open_time'],
    tmp_relation_type='transient'
) }}

{#- The strategy and why: macros/candles.sql. -#}
{{ candles(60000000, 'trades') }}
