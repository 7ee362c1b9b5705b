-- Account level: run once as ACCOUNTADMIN (or SECURITYADMIN + SYSADMIN).
-- The loader role writes raw.*; the reader role (the dashboard) only reads marts.
create role if not exists ${loader_role} comment = 'cryptoflow: COPY INTO raw, builds staging and marts';
create role if not exists ${reader_role} comment = 'cryptoflow: read-only access to marts, for the dashboard';
grant role ${loader_role} to role sysadmin;
grant role ${reader_role} to role sysadmin;
create warehouse if not exists ${compute} warehouse_size = xsmall auto_suspend = 60 auto_resume = true initially_suspended = true;
grant usage on warehouse ${compute} to role ${loader_role};
grant usage on warehouse ${compute} to role ${reader_role};
