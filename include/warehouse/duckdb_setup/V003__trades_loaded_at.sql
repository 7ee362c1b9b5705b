-- raw.trades.loaded_at: when the row was loaded into the warehouse, the same instant for every row
-- of one load commit (the loader sets it to the commit's transaction time, as the ledger's loaded_at).
-- dbt's staging reads raw.trades incrementally on it, never on trade time (late trades arrive).
-- Rows loaded before this version get the migration's own time (DuckDB's now() is the transaction's
-- start): they were never read by staging, so one instant for all of them is what an incremental
-- model needs. DuckDB cannot add a NOT NULL column to a table with rows, nor constrain a column in
-- the transaction that added it: V004 makes it NOT NULL.
alter table raw.trades add column loaded_at timestamptz default now();
