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
    total_cents   BIGINT NOT NULL,
    issued_at     BIGINT NOT NULL
);
CREATE INDEX invoices_account ON invoices (account_id);

CREATE TABLE finance_archive (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    record      TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    country     TEXT,
    start_at    BIGINT NOT NULL,
    archived_at BIGINT NOT NULL
);
