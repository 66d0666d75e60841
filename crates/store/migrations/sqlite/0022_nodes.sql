-- The nodes of the cluster (issue 30): each registers at start-up and
-- beats every few seconds; a node serves the customer databases of its
-- regions only. No personal data.
CREATE TABLE nodes (
    name         TEXT    PRIMARY KEY,
    node_id      TEXT    NOT NULL,
    regions      TEXT    NOT NULL,
    address      TEXT    NOT NULL DEFAULT '',
    version      TEXT    NOT NULL,
    started_at   INTEGER  NOT NULL,
    last_seen_at INTEGER  NOT NULL,
    databases    INTEGER  NOT NULL DEFAULT 0,
    disk_bytes   INTEGER  NOT NULL DEFAULT 0,
    -- Given up for dead: its databases were recovered on other nodes.
    retired      INTEGER  NOT NULL DEFAULT 0
);
