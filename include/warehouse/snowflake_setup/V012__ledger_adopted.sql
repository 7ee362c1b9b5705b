-- Whether raw.load_ledger accounts for every row of raw.trades (include/warehouse/snowflake_backend.py,
-- "Adopting"). A warehouse loaded before V010 holds rows whose files no ledger row names: until its
-- one row is here, a load lists the whole lake and enters each file in the ledger, keeping only the
-- trade ids raw.trades lacks, and the load that went through the whole listing inserts the row in
-- the transaction that saves its cursor. A warehouse with no trade yet has nothing to adopt: it is
-- adopted here, at once (a re-run of this version inserts nothing twice).
-- The loader's grants: V013.
create table if not exists ${database}.raw.ledger_adopted (
    adopted_at timestamp_tz not null default current_timestamp()
);
insert into ${database}.raw.ledger_adopted (adopted_at)
    select current_timestamp()
    from (select count(*) as trades from ${database}.raw.trades) as held
    where held.trades = 0 and not exists (select 1 from ${database}.raw.ledger_adopted);
