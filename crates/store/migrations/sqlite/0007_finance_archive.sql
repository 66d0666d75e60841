-- Invoices, and the restricted archive where the law's records of an erased
-- person are kept, detached from any account, until their legal period ends
-- (ACC-4). Only the finance role reads the archive.
CREATE TABLE invoices (
    id            TEXT    PRIMARY KEY,
    number        TEXT    NOT NULL UNIQUE,
    account_id    TEXT,
    buyer_name    TEXT    NOT NULL,
    buyer_email   TEXT    NOT NULL,
    buyer_address TEXT,
    country       TEXT,
    currency      TEXT    NOT NULL,
    total_cents   INTEGER NOT NULL,
    issued_at     INTEGER NOT NULL
);
CREATE INDEX invoices_account ON invoices (account_id);

CREATE TABLE finance_archive (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    record      TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    country     TEXT,
    start_at    INTEGER NOT NULL,
    archived_at INTEGER NOT NULL
);
