-- A TOTP code is accepted once: the step of the last code a staff member
-- used is kept, and a code of that step or an earlier one is refused (issue 27).
ALTER TABLE staff ADD COLUMN totp_last_step INTEGER;

-- The audit chain is keyed from this entry on (issue 27): entries written
-- before the key existed keep their plain hashes, sealed by the first keyed one.
ALTER TABLE audit_head ADD COLUMN keyed_from INTEGER NOT NULL DEFAULT 1;
UPDATE audit_head SET keyed_from = seq + 1;
