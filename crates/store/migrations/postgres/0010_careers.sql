-- Careers (JOB-1…JOB-7). No column for a special category of data exists
-- here or anywhere (JOB-3); a test enumerates every table to prove it.
CREATE TABLE job_postings (
    id              TEXT PRIMARY KEY,
    slug            TEXT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    location        TEXT NOT NULL,
    employment_type TEXT NOT NULL,
    description     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'draft',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    published_at    BIGINT
);

CREATE TABLE job_applications (
    id          TEXT PRIMARY KEY,
    posting_id  TEXT NOT NULL REFERENCES job_postings (id),
    token_hash  TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    phone       TEXT NOT NULL,
    letter      TEXT NOT NULL,
    shared      TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL,
    agency      TEXT,
    cv_key      TEXT,
    cv_name     TEXT,
    cv_type     TEXT,
    cv_size     BIGINT,
    stage       TEXT NOT NULL DEFAULT 'new',
    objected    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    closed_at   BIGINT
);
CREATE INDEX job_applications_posting ON job_applications (posting_id);
CREATE INDEX job_applications_closed ON job_applications (closed_at);

CREATE TABLE job_application_notes (
    id             BIGSERIAL PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES job_applications (id) ON DELETE CASCADE,
    at             BIGINT NOT NULL,
    staff_id       TEXT NOT NULL,
    stage          TEXT NOT NULL,
    body           TEXT NOT NULL
);
CREATE INDEX job_application_notes_app ON job_application_notes (application_id);

-- Only at the offer stage (JOB-2): the fields the policy file names, as JSON.
CREATE TABLE job_offer_data (
    application_id TEXT PRIMARY KEY REFERENCES job_applications (id) ON DELETE CASCADE,
    fields         TEXT NOT NULL,
    submitted_at   BIGINT NOT NULL
);

-- People we hired (JOB-7): kept for the contract, then the country's period.
CREATE TABLE employees (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    phone         TEXT NOT NULL,
    country       TEXT NOT NULL,
    job_title     TEXT NOT NULL,
    offer_fields  TEXT NOT NULL,
    cv_key        TEXT,
    hired_at      BIGINT NOT NULL,
    contract_end  BIGINT
);
