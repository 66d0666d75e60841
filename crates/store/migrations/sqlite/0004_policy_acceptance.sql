-- POL-2: which policy version each account accepted, and which versions were announced.
ALTER TABLE accounts ADD COLUMN policy_accepted TEXT;
ALTER TABLE accounts ADD COLUMN policy_accepted_at INTEGER;

CREATE TABLE policy_notices (
    version    TEXT    NOT NULL,
    account_id TEXT    NOT NULL,
    sent_at    INTEGER NOT NULL,
    PRIMARY KEY (version, account_id)
);
