-- The raw trade contract (the lake's Parquet schema, include/lake/trades.py TRADE_SCHEMA, column for
-- column), the load ledger (a file's ledger row commits with its rows), remembered refusals and the
-- discovery cursor. "if not exists" throughout: warehouses created before this runner existed hold
-- exactly these tables, and this version is recorded for them without changing anything.
create schema if not exists raw;
create table if not exists raw.trades (
    exchange varchar not null,
    symbol varchar not null,
    trade_id bigint not null,
    price decimal(38, 8) not null,
    quantity decimal(38, 8) not null,
    quote_quantity decimal(38, 16) not null,
    trade_time timestamptz not null,
    is_buyer_maker boolean not null,
    source varchar not null,
    ingested_at timestamptz not null
);
create table if not exists raw.load_ledger (
    file_key varchar primary key,
    size bigint not null,
    etag varchar not null,
    row_count bigint not null,
    loaded_at timestamptz not null default now()
);
create table if not exists raw.load_refusals (
    file_key varchar not null,
    etag varchar not null,
    reason varchar not null,
    refused_at timestamptz not null default now(),
    primary key (file_key, etag)
);
create table if not exists raw.load_cursor (
    markers json not null,
    saved_at timestamptz not null default now()
);
