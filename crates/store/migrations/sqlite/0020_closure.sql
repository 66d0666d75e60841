-- Account closure ("kept 30 days after your account is closed"): a third
-- status and when it was closed, and the warning before an idle account is
-- erased. SQLite cannot change a CHECK constraint, so the table is rebuilt
-- (nothing references it by foreign key). Visits live in their own day
-- files on SQLite; their per-visit column is added when a file is opened.
CREATE TABLE accounts_new (
    id                 TEXT    PRIMARY KEY,
    email              TEXT    NOT NULL UNIQUE,
    name               TEXT    NOT NULL,
    company            TEXT    NOT NULL,
    phone              TEXT,
    industry           TEXT,
    interest           TEXT,
    invoice_by_post    INTEGER NOT NULL DEFAULT 0,
    address            TEXT,
    password_hash      TEXT    NOT NULL,
    email_verified_at  INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    status             TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'erasing', 'closed')),
    policy_accepted    TEXT,
    policy_accepted_at INTEGER,
    country            TEXT,
    closed_at          INTEGER,
    idle_warned_at     INTEGER
);
INSERT INTO accounts_new (id, email, name, company, phone, industry, interest, invoice_by_post, address,
                          password_hash, email_verified_at, created_at, updated_at, status,
                          policy_accepted, policy_accepted_at, country)
SELECT id, email, name, company, phone, industry, interest, invoice_by_post, address,
       password_hash, email_verified_at, created_at, updated_at, status,
       policy_accepted, policy_accepted_at, country
FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_new RENAME TO accounts;
CREATE INDEX accounts_closed ON accounts (status, closed_at);
