-- Completeness by trade id (docs/architecture.md, "The live edge"). raw.completeness gains the
-- window's expected id range [first_id, end_id): first_id is the first trade at or after
-- window_start, end_id the first trade at or after window_end (null for a window loaded before).
-- raw.gap_fills holds the live fills of the gaps the stream saw (status/gap_fills/...), one row per
-- (exchange, symbol, first_id, last_id), refreshed by every load (include/warehouse/status.py).
-- The loader's grants on raw's future tables (V003, V005) cover it; the reader's: V009.
-- "if not exists": Snowflake commits DDL at once, so a re-run after a failed update finds them.
alter table ${database}.raw.completeness add column if not exists first_id number(19, 0);
alter table ${database}.raw.completeness add column if not exists end_id number(19, 0);
create table if not exists ${database}.raw.gap_fills (
    exchange varchar not null,
    symbol varchar not null,
    first_id number(19, 0) not null,
    last_id number(19, 0) not null,
    since timestamp_tz,
    filled number(19, 0) not null,
    holes varchar not null,
    hole_count number(19, 0) not null,
    missing number(19, 0) not null,
    checked_at timestamp_tz,
    loaded_at timestamp_tz not null
);
-- The candle marts gained columns (first_trade_id, last_trade_id, last_trade_time, is_complete,
-- built_at) that their incremental builds read back: marts built before cannot be built on. They are
-- derived from raw, so they are dropped, and the next dbt build builds them whole. marts.candle_audit
-- (the audit's record) stays.
drop table if exists ${database}.marts.candles_1m;
drop table if exists ${database}.marts.candles_5m;
drop table if exists ${database}.marts.candles_15m;
drop table if exists ${database}.marts.candles_1h;
drop table if exists ${database}.marts.candles_4h;
drop table if exists ${database}.marts.candles_1d;
