-- Each free trial an account started (new or imported databases), kept when
-- the database is removed so the per-account limit cannot be reset by
-- removing and creating again; erased with the account.
CREATE TABLE trial_starts (
    account_id  TEXT    NOT NULL,
    database_id TEXT    NOT NULL,
    started_at  INTEGER NOT NULL
);
CREATE INDEX trial_starts_account ON trial_starts (account_id);
