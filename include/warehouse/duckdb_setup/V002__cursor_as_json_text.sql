-- The cursor holds JSON text, as on Snowflake (varchar there): one cursor type for both backends.
alter table raw.load_cursor alter column markers set data type varchar;
