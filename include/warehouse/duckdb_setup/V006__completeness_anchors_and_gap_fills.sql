-- Completeness by trade id (docs/architecture.md, "The live edge"). raw.completeness gains the
-- window's expected id range [first_id, end_id): first_id is the first trade at or after
-- window_start, end_id the first trade at or after window_end (the repair's ledger, first_id and
-- end_id; null for a window checked before the ledger held them, or loaded before this version).
-- raw.gap_fills holds the live fills of the gaps the stream saw (status/gap_fills/...), one row per
-- (exchange, symbol, first_id, last_id): ids first_id..last_id were the gap (last_id = first_id - 1
-- for an empty range that only carries an anchor); since, when set, is the time at or after which
-- first_id is the first trade; holes is the JSON list of the ids the exchange showed do not exist.
alter table raw.completeness add column first_id bigint;
alter table raw.completeness add column end_id bigint;
create table raw.gap_fills (
    exchange varchar not null,
    symbol varchar not null,
    first_id bigint not null,
    last_id bigint not null,
    since timestamptz,
    filled bigint not null,
    holes varchar not null,
    hole_count bigint not null,
    missing bigint not null,
    checked_at timestamptz,
    loaded_at timestamptz not null,
    primary key (exchange, symbol, first_id, last_id)
);
-- The candle marts gained columns (first_trade_id, last_trade_id, last_trade_time, is_complete,
-- built_at) that their incremental builds read back: marts built before cannot be built on. They are
-- derived from raw, so they are dropped, and the next dbt build builds them whole. marts.candle_audit
-- (the audit's record) stays.
drop table if exists marts.candles_1m;
drop table if exists marts.candles_5m;
drop table if exists marts.candles_15m;
drop table if exists marts.candles_1h;
drop table if exists marts.candles_4h;
drop table if exists marts.candles_1d;
