-- Object grants: run as the owner of the objects (or SECURITYADMIN).
-- The loader reads the ledger (raw.load_ledger: V010) to leave out the files it holds, and adds a
-- row per file it loads: select and insert, by name. The ledger only grows, and a row taken out of
-- it would let that file load a second time, so the update and delete that V003's and V005's grants
-- on raw's future tables gave it are taken back. The reader never reads it.
grant select, insert on table ${database}.raw.load_ledger to role ${loader_role};
revoke update, delete on table ${database}.raw.load_ledger from role ${loader_role};
