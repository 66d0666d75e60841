-- The Database Upgrade service (UPG-1…UPG-4): one row per uploaded database.
-- The files live only in the upgrade storage location (<data>/upgrade/).
CREATE TABLE upgrade_requests (
    id              TEXT    PRIMARY KEY,
    account_id      TEXT    NOT NULL,
    file_name       TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('archive', 'sqlite')),
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    progress        BIGINT NOT NULL DEFAULT 0,
    from_version    BIGINT,
    to_version      BIGINT,
    report          TEXT,
    error           TEXT,
    source_present  BIGINT NOT NULL DEFAULT 1,
    result_present  BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    last_success_at BIGINT
);
CREATE INDEX upgrade_requests_account ON upgrade_requests (account_id);
