-- Object grants: run as the owner of the objects (or SECURITYADMIN).
-- The loader stamps loaded_at on the rows its COPY inserted (an UPDATE in the load's transaction).
grant update on all tables in schema ${database}.raw to role ${loader_role};
grant update on future tables in schema ${database}.raw to role ${loader_role};
