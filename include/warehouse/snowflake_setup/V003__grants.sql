-- Object grants: run as the owner of the objects (or SECURITYADMIN).
grant usage on database ${database} to role ${loader_role};
grant usage on database ${database} to role ${reader_role};
grant usage, create table, create view on schema ${database}.raw to role ${loader_role};
grant usage, create table, create view on schema ${database}.staging to role ${loader_role};
grant usage, create table, create view on schema ${database}.marts to role ${loader_role};
grant usage on stage ${database}.raw.lake to role ${loader_role};
grant usage on file format ${database}.raw.lake_parquet to role ${loader_role};
grant select, insert, delete on all tables in schema ${database}.raw to role ${loader_role};
grant select, insert, delete on future tables in schema ${database}.raw to role ${loader_role};
grant usage on schema ${database}.marts to role ${reader_role};
grant select on all tables in schema ${database}.marts to role ${reader_role};
grant select on future tables in schema ${database}.marts to role ${reader_role};
grant select on all views in schema ${database}.marts to role ${reader_role};
grant select on future views in schema ${database}.marts to role ${reader_role};
