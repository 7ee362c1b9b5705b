-- loaded_at is required and has no default: every load names it (V003 backfilled the earlier rows).
alter table raw.trades alter column loaded_at set not null;
alter table raw.trades alter column loaded_at drop default;
