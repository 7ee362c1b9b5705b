-- Object grants: run as the owner of the objects (or SECURITYADMIN).
-- The loader reads whether the ledger is adopted (raw.ledger_adopted: V012) and records it, once:
-- select and insert, by name. The row is never changed or taken out by a load (taken out, it would
-- make the next load adopt again: harmless, but a read of the whole lake), so the update and delete
-- that V003's and V005's grants on raw's future tables gave the loader are taken back.
grant select, insert on table ${database}.raw.ledger_adopted to role ${loader_role};
revoke update, delete on table ${database}.raw.ledger_adopted from role ${loader_role};
