-- Object grants: run as the owner of the objects (or SECURITYADMIN).
-- Compaction rewrites a verified hour's small files as one (include/lake/compaction.py) and deletes
-- them; once a listing shows them gone, the load deletes their ledger rows
-- (SQLWarehouse.forget_replaced), so the ledger keeps a row per live file instead of one per flush
-- ever loaded. A key that is gone cannot be listed, so its row no longer guards anything. The loader
-- gets delete back on the ledger for that (V011 took it); it still may not update a row.
grant delete on table ${database}.raw.load_ledger to role ${loader_role};
