-- The lake's status objects, refreshed by every load (include/warehouse/status.py): one row per
-- stream heartbeat (exchange, symbol) and one per completeness window (exchange, symbol, window_start).
-- loaded_at: when the refresh that wrote the row ran. raw.status_files holds the ETag of each status
-- object consumed, so a load reads only the objects that changed since. The loader's grants on raw's
-- future tables (V003, V005) cover them.
create table if not exists ${database}.raw.stream_status (
    exchange varchar not null,
    symbol varchar not null,
    updated_at timestamp_tz not null,
    last_trade_id number(19, 0),
    last_trade_time timestamp_tz,
    lag_seconds float,
    connection varchar,
    loaded_at timestamp_tz not null
);
create table if not exists ${database}.raw.completeness (
    exchange varchar not null,
    symbol varchar not null,
    window_start timestamp_tz not null,
    window_end timestamp_tz not null,
    expected number(19, 0) not null,
    present_before number(19, 0) not null,
    filled number(19, 0) not null,
    holes varchar not null,
    hole_count number(19, 0) not null,
    refused_count number(19, 0) not null,
    missing number(19, 0) not null,
    checked_at timestamp_tz,
    loaded_at timestamp_tz not null
);
create table if not exists ${database}.raw.status_files (
    file_key varchar not null,
    etag varchar not null
);
