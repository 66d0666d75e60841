-- Accounts, sessions, staff, Helpdesk. Times are Unix milliseconds.
CREATE TABLE accounts (
    id                TEXT    PRIMARY KEY,
    email             TEXT    NOT NULL UNIQUE,
    name              TEXT    NOT NULL,
    company           TEXT    NOT NULL,
    phone             TEXT,
    industry          TEXT,
    interest          TEXT,
    invoice_by_post   INTEGER NOT NULL DEFAULT 0,
    address           TEXT,
    password_hash     TEXT    NOT NULL,
    email_verified_at INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'erasing'))
);

-- Single-use links (e-mail verification, password reset); only hashes are stored.
CREATE TABLE auth_tokens (
    token_hash TEXT    PRIMARY KEY,
    account_id TEXT    NOT NULL,
    purpose    TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX auth_tokens_account ON auth_tokens (account_id);

CREATE TABLE sessions (
    token_hash   TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('web', 'api', 'staff')),
    principal    TEXT    NOT NULL,
    csrf         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_principal ON sessions (principal);

CREATE TABLE signins (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    success    INTEGER NOT NULL,
    ip         TEXT,
    user_agent TEXT
);
CREATE INDEX signins_account ON signins (account_id);

-- Fixed-window counters shared by every node (sign-in, sign-up, reset).
CREATE TABLE rate_limits (
    key          TEXT    PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
);

CREATE TABLE staff (
    id            TEXT    PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    totp_secret   TEXT    NOT NULL,
    roles         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);

CREATE TABLE tickets (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT,
    kind       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    name       TEXT,
    email      TEXT,
    company    TEXT,
    phone      TEXT,
    industry   TEXT,
    interest   TEXT,
    status     TEXT    NOT NULL,
    due_at     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    closed_at  INTEGER,
    outcome    TEXT
);
CREATE INDEX tickets_account ON tickets (account_id);
CREATE INDEX tickets_status ON tickets (status, due_at);

CREATE TABLE ticket_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id  INTEGER NOT NULL,
    author     TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX ticket_messages_ticket ON ticket_messages (ticket_id);

CREATE TABLE access_exports (
    id            TEXT    PRIMARY KEY,
    account_id    TEXT    NOT NULL,
    ticket_id     INTEGER NOT NULL,
    path          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    downloaded_at INTEGER
);
CREATE INDEX access_exports_account ON access_exports (account_id);
