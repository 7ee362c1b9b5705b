-- Object grants: run as the owner of the objects (or SECURITYADMIN).
-- The dashboard's health panel reads, with the reader role, the stream heartbeats and the
-- completeness ledger (raw.stream_status, raw.completeness: V006). These two tables only: the
-- reader never reads raw.trades or the load's bookkeeping, so no grant on raw's (future) tables.
-- marts.candle_audit, which the audit creates in marts, is already covered by V003's select on
-- marts' tables and future tables.
grant usage on schema ${database}.raw to role ${reader_role};
grant select on table ${database}.raw.stream_status to role ${reader_role};
grant select on table ${database}.raw.completeness to role ${reader_role};
