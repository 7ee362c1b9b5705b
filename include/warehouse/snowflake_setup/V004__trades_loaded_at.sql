-- raw.trades.loaded_at: when the row was loaded, the same instant for every row of one COPY;
-- dbt's staging reads raw.trades incrementally on it, never on trade time.
-- Nullable: COPY INTO ... MATCH_BY_COLUMN_NAME fills a table column the Parquet file lacks with
-- NULL, and the load stamps those rows with its next statement (snowflake_backend.py). Rows loaded
-- before this version get the migration's time.
-- "if not exists": Snowflake commits DDL at once, so a re-run after a failed update finds the column.
alter table ${database}.raw.trades add column if not exists loaded_at timestamp_tz;
update ${database}.raw.trades set loaded_at = current_timestamp() where loaded_at is null;
