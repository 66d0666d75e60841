-- Continuous protection (issue 31): every committed transaction of a
-- customer database is shipped, sealed, to every backup region as part of a
-- stream segment (`stream/<database>/<hash>` in the vault). A chain is an
-- unbroken sequence of commits (`first_seq`..`last_seq`) from the moment
-- its database file was last known whole (`chain_started_at`); a point-in-
-- time restore starts from a snapshot taken during the chain and replays
-- the chain's commits up to the instant asked for.
CREATE TABLE stream_segments (
    object TEXT PRIMARY KEY,
    database_id TEXT NOT NULL,
    chain TEXT NOT NULL,
    chain_started_at BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    shipped_at BIGINT NOT NULL
);
CREATE INDEX stream_segments_by_database ON stream_segments (database_id, chain, first_seq);
-- How long the oldest commit a node has not yet shipped has waited, at its
-- last heartbeat (`seldesk backup status` alerts past a threshold).
ALTER TABLE nodes ADD COLUMN stream_lag_ms BIGINT NOT NULL DEFAULT 0;
