-- The load ledger, as on DuckDB (include/warehouse/duckdb_setup/V001): one row per lake file in
-- raw.trades (its key, size, ETag, rows and loaded_at), inserted in the transaction of the COPY that
-- loaded it (include/warehouse/snowflake_backend.py). It, not Snowflake's load history (64 days),
-- decides what is loaded: a file in it is never copied again, however old. The primary key is
-- Snowflake's documentation only (not enforced); the load is what keeps one row per file.
-- The loader's grants: V011.
create table if not exists ${database}.raw.load_ledger (
    file_key varchar not null primary key,
    size number(19, 0) not null,
    etag varchar not null,
    row_count number(19, 0) not null,
    loaded_at timestamp_tz not null default current_timestamp()
);
