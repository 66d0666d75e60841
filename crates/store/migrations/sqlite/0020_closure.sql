-- Account closure ("kept 30 days after your account is closed") and the
-- warning before an idle account is erased. (Visits live in their own day
-- files on SQLite; their per-visit column is added when a file is opened.)
ALTER TABLE accounts ADD COLUMN closed_at INTEGER;
ALTER TABLE accounts ADD COLUMN idle_warned_at INTEGER;
