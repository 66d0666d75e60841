-- The schema version of each customer database's app (issue 11): databases
-- made before versions existed are at version 1.
ALTER TABLE databases ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1;
