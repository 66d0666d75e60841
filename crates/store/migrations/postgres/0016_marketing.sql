-- Marketing (issue 10): preferences, suppression, campaigns, events,
-- partners and trend aggregates. Times are Unix milliseconds.

-- The country an account holder gave at sign-up (segments, trends).
ALTER TABLE accounts ADD COLUMN country TEXT;
-- When a trial database became a subscribed one (conversions in trends).
ALTER TABLE databases ADD COLUMN converted_at BIGINT;

-- A person's marketing choice: `opted_in` 1 or 0, and on what basis.
CREATE TABLE marketing_preferences (
    subject    TEXT    PRIMARY KEY,
    opted_in   BIGINT NOT NULL,
    basis      TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    changed_at BIGINT NOT NULL
);

-- Addresses that must never get marketing mail again: only a hash, so the
-- opt-out outlives the erasure of everything else about the person.
CREATE TABLE marketing_suppressions (
    email_hash TEXT    PRIMARY KEY,
    source     TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);

-- Links in messages to the preference page and the one-click unsubscribe.
CREATE TABLE marketing_links (
    token_hash TEXT    PRIMARY KEY,
    subject    TEXT    NOT NULL,
    email_hash TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX marketing_links_subject ON marketing_links (subject);

CREATE TABLE campaigns (
    id           TEXT    PRIMARY KEY,
    mail_subject TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    segment      TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('draft', 'sending', 'sent')),
    created_by   TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    finished_at  BIGINT
);

-- One row per recipient, fixed when the send starts. A row is claimed before
-- its message goes and marked sent after, so a crash never sends twice.
CREATE TABLE campaign_recipients (
    campaign_id TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'claimed', 'sent', 'skipped', 'unconfirmed', 'failed')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, subject)
);
CREATE INDEX campaign_recipients_status ON campaign_recipients (campaign_id, status);
CREATE INDEX campaign_recipients_subject ON campaign_recipients (subject);

CREATE TABLE events (
    id                TEXT    PRIMARY KEY,
    slug              TEXT    NOT NULL UNIQUE,
    title             TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    city              TEXT    NOT NULL,
    country           TEXT    NOT NULL,
    starts_at         BIGINT NOT NULL,
    organiser         TEXT    NOT NULL,
    organiser_webhook TEXT,
    sponsors          TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('draft', 'open', 'closed')),
    created_at        BIGINT NOT NULL
);

CREATE TABLE event_registrations (
    id         TEXT    PRIMARY KEY,
    event_id   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    phone      TEXT    NOT NULL,
    company    TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (event_id, email)
);
CREATE INDEX event_registrations_subject ON event_registrations (subject);

CREATE TABLE partners (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    country    TEXT    NOT NULL,
    website    TEXT    NOT NULL,
    webhook    TEXT,
    active     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX partners_country ON partners (country, active);

CREATE TABLE partner_referrals (
    id         TEXT    PRIMARY KEY,
    partner_id TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    phone      TEXT    NOT NULL,
    company    TEXT    NOT NULL,
    country    TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX partner_referrals_subject ON partner_referrals (subject);

-- Monthly counts for trend reports (MKT-2): each sign-up, trial and
-- conversion is counted once, when first seen, and the counts outlive the
-- records they came from. `watermark` remembers how far counting got.
CREATE TABLE trend_counts (
    month    TEXT    NOT NULL,
    metric   TEXT    NOT NULL,
    country  TEXT    NOT NULL,
    industry TEXT    NOT NULL,
    interest TEXT    NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (month, metric, country, industry, interest)
);
CREATE TABLE trend_watermarks (
    metric TEXT    PRIMARY KEY,
    upto   BIGINT NOT NULL
);

-- Which recipients already got a registration or referral, so a retried
-- transfer never sends the same person's data twice.
CREATE TABLE marketing_transfers (
    source    TEXT    NOT NULL,
    recipient TEXT    NOT NULL,
    ledger_id BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (source, recipient)
);
