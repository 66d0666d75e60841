-- CK-5: each cookie choice, kept as proof (pseudonymous id, time, choices,
-- policy and banner versions, whether Global Privacy Control was sent).
CREATE TABLE consents (
    id             BIGSERIAL PRIMARY KEY,
    consent_id     TEXT    NOT NULL,
    subject        TEXT,
    at             BIGINT NOT NULL,
    preferences    BIGINT NOT NULL,
    analytics      BIGINT NOT NULL,
    third_party    BIGINT NOT NULL,
    policy_version TEXT    NOT NULL,
    banner_version TEXT    NOT NULL,
    gpc            BIGINT NOT NULL,
    withdrawn      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX consents_consent_id ON consents (consent_id);
CREATE INDEX consents_subject ON consents (subject);
