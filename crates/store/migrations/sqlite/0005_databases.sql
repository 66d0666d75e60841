-- Customer databases: the control plane's record of each one.
CREATE TABLE databases (
    id             TEXT    PRIMARY KEY,
    account_id     TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    region         TEXT    NOT NULL,
    plan           TEXT    NOT NULL CHECK (plan IN ('trial', 'subscribed')),
    status         TEXT    NOT NULL CHECK (status IN ('active', 'deactivated', 'moving')),
    trial_ends_at  INTEGER,
    deactivated_at INTEGER,
    created_at     INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
CREATE INDEX databases_status ON databases (status, deactivated_at);
