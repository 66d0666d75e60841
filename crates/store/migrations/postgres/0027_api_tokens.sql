-- Personal access tokens (issue 33): created and revoked by the account's
-- owner, each limited to scopes and an expiry. Only a hash of the token is
-- kept; the token itself is shown once, when it is made. Deleted with the
-- account (an erasure) and at once when revoked.
CREATE TABLE api_tokens (
    id           TEXT   PRIMARY KEY,
    account_id   TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    scopes       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    last_route   TEXT,
    uses         BIGINT NOT NULL DEFAULT 0,
    audited_at   BIGINT
);
CREATE INDEX api_tokens_account ON api_tokens (account_id);

-- Idempotent creates (issue 33): the first result of a POST carrying an
-- `Idempotency-Key`, per account, for a day. Only where the created thing
-- lives and how the response began are kept, never customer data: a retry
-- is answered by reading the created thing again.
CREATE TABLE idempotency_keys (
    account_id  TEXT   NOT NULL,
    idem_key    TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    status      INTEGER,
    location    TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, idem_key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
