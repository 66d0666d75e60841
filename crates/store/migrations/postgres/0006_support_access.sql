-- DB-3: support access to a customer database needs a reason and a ticket,
-- is time-boxed, read-only unless the customer approves more, and revocable.
CREATE TABLE support_grants (
    id          BIGSERIAL PRIMARY KEY,
    database_id TEXT    NOT NULL,
    account_id  TEXT    NOT NULL,
    staff_id    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    ticket_id   BIGINT NOT NULL,
    scope       TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    approved_at BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX support_grants_database ON support_grants (database_id);
