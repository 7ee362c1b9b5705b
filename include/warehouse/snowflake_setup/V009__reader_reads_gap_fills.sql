-- Object grants: run as the owner of the objects (or SECURITYADMIN).
-- The dashboard may show the live gap fills (raw.gap_fills: V008) beside the completeness ledger:
-- the reader role may read that table too, one more table of raw by name, as in V007.
grant select on table ${database}.raw.gap_fills to role ${reader_role};
