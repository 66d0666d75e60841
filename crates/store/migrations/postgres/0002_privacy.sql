-- Privacy core: audit chain, erasure log, disclosure ledger, legal holds, retention runs.
CREATE TABLE audit_log (
    seq       BIGINT  PRIMARY KEY,
    at        BIGINT  NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    subject   TEXT,
    target    TEXT,
    details   TEXT    NOT NULL DEFAULT '{}',
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- The chain's head (last entry) and base (last pruned entry): verify checks
-- both ends, so removing the newest or the oldest entries is detected too.
CREATE TABLE audit_head (
    id        BIGINT  PRIMARY KEY CHECK (id = 1),
    seq       BIGINT  NOT NULL,
    hash      TEXT    NOT NULL,
    base_seq  BIGINT  NOT NULL,
    base_hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash, base_seq, base_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
        0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE erasure_log (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT  NOT NULL,
    category TEXT    NOT NULL,
    subject  TEXT,
    record   TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    actor    TEXT    NOT NULL
);
CREATE INDEX erasure_log_at ON erasure_log (at);
CREATE INDEX erasure_log_subject ON erasure_log (subject);

CREATE TABLE disclosures (
    id             BIGSERIAL PRIMARY KEY,
    at             BIGINT  NOT NULL,
    recipient      TEXT    NOT NULL,
    recipient_name TEXT    NOT NULL,
    purpose        TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    fields         TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('sent', 'failed')),
    error          TEXT
);
CREATE INDEX disclosures_subject ON disclosures (subject);
CREATE INDEX disclosures_at ON disclosures (at);

CREATE TABLE legal_holds (
    id          BIGSERIAL PRIMARY KEY,
    category    TEXT    NOT NULL,
    subject     TEXT,
    from_at     BIGINT,
    to_at       BIGINT,
    reason      TEXT    NOT NULL,
    until_at    BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    released_at BIGINT,
    released_by TEXT
);

CREATE TABLE retention_runs (
    id          BIGSERIAL PRIMARY KEY,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT  NOT NULL,
    dry_run     BIGINT  NOT NULL,
    erased      BIGINT  NOT NULL,
    held        BIGINT  NOT NULL,
    summary     TEXT    NOT NULL
);
