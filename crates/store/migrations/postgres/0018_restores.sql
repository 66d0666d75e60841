-- Owner restores run as jobs so the control panel can show their progress
-- (issue 5). A row is kept a week after it finished, then removed.
CREATE TABLE backup_restores (
    id              TEXT    PRIMARY KEY,
    account_id      TEXT    NOT NULL,
    database_id     TEXT    NOT NULL,
    snapshot        TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    done_bytes      BIGINT NOT NULL DEFAULT 0,
    total_bytes     BIGINT NOT NULL DEFAULT 0,
    new_database_id TEXT,
    error           TEXT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX backup_restores_database ON backup_restores (database_id, created_at);
