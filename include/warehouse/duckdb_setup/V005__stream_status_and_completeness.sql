-- The lake's status objects, refreshed by every load (include/warehouse/status.py): one row per
-- stream heartbeat (exchange, symbol) and one per completeness window (exchange, symbol, window_start).
-- loaded_at: when the refresh that wrote the row ran. raw.status_files holds the ETag of each status
-- object consumed, so a load reads only the objects that changed since.
create table raw.stream_status (
    exchange varchar not null,
    symbol varchar not null,
    updated_at timestamptz not null,
    last_trade_id bigint,
    last_trade_time timestamptz,
    lag_seconds double,
    connection varchar,
    loaded_at timestamptz not null,
    primary key (exchange, symbol)
);
create table raw.completeness (
    exchange varchar not null,
    symbol varchar not null,
    window_start timestamptz not null,
    window_end timestamptz not null,
    expected bigint not null,
    present_before bigint not null,
    filled bigint not null,
    holes varchar not null,
    hole_count bigint not null,
    refused_count bigint not null,
    missing bigint not null,
    checked_at timestamptz,
    loaded_at timestamptz not null,
    primary key (exchange, symbol, window_start)
);
create table raw.status_files (
    file_key varchar primary key,
    etag varchar not null
);
