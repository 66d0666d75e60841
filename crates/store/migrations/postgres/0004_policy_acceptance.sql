-- POL-2: which policy version each account accepted, and which versions were announced.
ALTER TABLE accounts ADD COLUMN policy_accepted TEXT;
ALTER TABLE accounts ADD COLUMN policy_accepted_at BIGINT;

CREATE TABLE policy_notices (
    version    TEXT    NOT NULL,
    account_id TEXT    NOT NULL,
    sent_at    BIGINT NOT NULL,
    PRIMARY KEY (version, account_id)
);
