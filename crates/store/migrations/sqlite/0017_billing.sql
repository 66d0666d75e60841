-- Billing (issue 9): subscriptions, payments, processor webhooks and the
-- gap-free invoice numbers. Card data has no column anywhere: cards are
-- entered on the processor's page and only its token is kept (PAY-1, PAY-3).
-- Times are Unix milliseconds; amounts are minor units (cents).

-- One subscription per paid database.
CREATE TABLE subscriptions (
    id               TEXT    PRIMARY KEY,
    account_id       TEXT    NOT NULL,
    database_id      TEXT    NOT NULL,
    plan             TEXT    NOT NULL,
    billing_interval TEXT    NOT NULL CHECK (billing_interval IN ('monthly', 'yearly')),
    seats            INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    country          TEXT,
    amount_cents     INTEGER NOT NULL,
    processor        TEXT    NOT NULL,
    processor_token  TEXT,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'active', 'past_due', 'lapsed', 'cancelled')),
    period_start     INTEGER,
    period_end       INTEGER,
    credit_cents     INTEGER NOT NULL DEFAULT 0,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    next_retry_at    INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    cancelled_at     INTEGER
);
CREATE INDEX subscriptions_account ON subscriptions (account_id);
CREATE INDEX subscriptions_database ON subscriptions (database_id);
CREATE INDEX subscriptions_due ON subscriptions (status, period_end);

-- Each charge: a checkout, a renewal, a plan change.
CREATE TABLE payments (
    id                TEXT    PRIMARY KEY,
    account_id        TEXT,
    subscription_id   TEXT,
    kind              TEXT    NOT NULL CHECK (kind IN ('checkout', 'renewal', 'change')),
    processor         TEXT    NOT NULL,
    processor_order   TEXT,
    processor_payment TEXT,
    return_mac        TEXT,
    status            TEXT    NOT NULL CHECK (status IN ('created', 'captured', 'failed', 'refunded', 'mismatch')),
    amount_cents      INTEGER NOT NULL,
    refunded_cents    INTEGER NOT NULL DEFAULT 0,
    currency          TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    reference         TEXT    NOT NULL UNIQUE,
    country           TEXT,
    lines             TEXT    NOT NULL,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    captured_at       INTEGER
);
CREATE INDEX payments_account ON payments (account_id);
CREATE INDEX payments_order ON payments (processor, processor_order);
CREATE INDEX payments_payment ON payments (processor, processor_payment);

-- Webhook events already processed: a replay is refused, never applied twice.
CREATE TABLE processor_events (
    processor   TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (processor, event_id)
);

-- The last invoice number of each year, taken in the same transaction as
-- the invoice: numbers have no gaps.
CREATE TABLE invoice_counters (
    year INTEGER PRIMARY KEY,
    last INTEGER NOT NULL
);

ALTER TABLE invoices ADD COLUMN payment_id TEXT;
ALTER TABLE invoices ADD COLUMN document TEXT;
