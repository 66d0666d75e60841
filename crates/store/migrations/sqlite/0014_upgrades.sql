-- The Database Upgrade service (UPG-1…UPG-4): one row per uploaded database.
-- The files live only in the upgrade storage location (<data>/upgrade/).
CREATE TABLE upgrade_requests (
    id              TEXT    PRIMARY KEY,
    account_id      TEXT    NOT NULL,
    file_name       TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('archive', 'sqlite')),
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    progress        INTEGER NOT NULL DEFAULT 0,
    from_version    INTEGER,
    to_version      INTEGER,
    report          TEXT,
    error           TEXT,
    source_present  INTEGER NOT NULL DEFAULT 1,
    result_present  INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    last_success_at INTEGER
);
CREATE INDEX upgrade_requests_account ON upgrade_requests (account_id);
