-- CK-5: each cookie choice, kept as proof (pseudonymous id, time, choices,
-- policy and banner versions, whether Global Privacy Control was sent).
CREATE TABLE consents (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    consent_id     TEXT    NOT NULL,
    subject        TEXT,
    at             INTEGER NOT NULL,
    preferences    INTEGER NOT NULL,
    analytics      INTEGER NOT NULL,
    third_party    INTEGER NOT NULL,
    policy_version TEXT    NOT NULL,
    banner_version TEXT    NOT NULL,
    gpc            INTEGER NOT NULL,
    withdrawn      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX consents_consent_id ON consents (consent_id);
CREATE INDEX consents_subject ON consents (subject);
