-- Database objects: run by the loader's owner. The stage's storage integration is created by an
-- ACCOUNTADMIN together with the bucket's IAM role (see the README); a file:// lake needs none.
create database if not exists ${database};
create schema if not exists ${database}.raw;
create schema if not exists ${database}.staging;
create schema if not exists ${database}.marts;
create file format if not exists ${database}.raw.lake_parquet type = parquet;
create stage if not exists ${database}.raw.lake ${stage_location} file_format = (format_name = '${database}.raw.lake_parquet');
create table if not exists ${database}.raw.trades (
    exchange varchar not null,
    symbol varchar not null,
    trade_id number(19, 0) not null,
    price number(38, 8) not null,
    quantity number(38, 8) not null,
    quote_quantity number(38, 16) not null,
    trade_time timestamp_tz not null,
    is_buyer_maker boolean not null,
    source varchar not null,
    ingested_at timestamp_tz not null
);
create table if not exists ${database}.raw.load_refusals (
    file_key varchar not null,
    etag varchar not null,
    reason varchar not null,
    refused_at timestamp_tz not null default current_timestamp()
);
create table if not exists ${database}.raw.load_cursor (
    markers varchar not null,
    saved_at timestamp_tz not null default current_timestamp()
);
