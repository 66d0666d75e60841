-- A TOTP code is accepted once: the step of the last code a staff member
-- used is kept, and a code of that step or an earlier one is refused (issue 27).
ALTER TABLE staff ADD COLUMN totp_last_step BIGINT;

-- The audit chain is keyed from this entry on (issue 27): entries written
-- before the key existed keep their plain hashes, sealed by the first keyed one.
ALTER TABLE audit_head ADD COLUMN keyed_from BIGINT NOT NULL DEFAULT 1;
UPDATE audit_head SET keyed_from = seq + 1;

-- A move records where it comes from and goes to, and how far its copy is,
-- so an interrupted move resumes or rolls back and erases the right copy,
-- and the customer sees its progress (issue 27, DB-8).
ALTER TABLE databases ADD COLUMN moving_from TEXT;
ALTER TABLE databases ADD COLUMN moving_to TEXT;
ALTER TABLE databases ADD COLUMN move_done BIGINT NOT NULL DEFAULT 0;
ALTER TABLE databases ADD COLUMN move_total BIGINT NOT NULL DEFAULT 0;

-- An upload's size, for the daily upload allowance per account (issue 27).
ALTER TABLE upgrade_requests ADD COLUMN size BIGINT NOT NULL DEFAULT 0;

-- The database a customer's request is about: support access to a database
-- needs a ticket its owner opened about it (issue 28, DB-3).
ALTER TABLE tickets ADD COLUMN database_id TEXT;

-- A subscription granted by the finance role (audited, with a reason) runs
-- until this moment; otherwise only a confirmed payment makes a database
-- subscribed (issue 28).
ALTER TABLE databases ADD COLUMN granted_until BIGINT;
