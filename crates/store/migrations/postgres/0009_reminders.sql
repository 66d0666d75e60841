-- DB-7: when the owner was reminded that a deactivated database will be destroyed.
ALTER TABLE databases ADD COLUMN reminded_at BIGINT;
