-- Browser data (BRW-2, BRW-5) on PostgreSQL: one table partitioned by day
-- (partitions visits_YYYYMMDD are created as days are written and dropped
-- whole at expiry), and the visits kept by legal holds.
CREATE TABLE visits (
    at              BIGINT NOT NULL,
    ip              TEXT   NOT NULL,
    browser         TEXT   NOT NULL,
    browser_version TEXT   NOT NULL,
    platform        TEXT   NOT NULL,
    referrer        TEXT,
    path            TEXT   NOT NULL,
    language        TEXT,
    country         TEXT,
    person          TEXT
) PARTITION BY RANGE (at);
CREATE INDEX visits_ip ON visits (ip);
CREATE INDEX visits_person ON visits (person);

CREATE TABLE visits_held (
    id              BIGSERIAL PRIMARY KEY,
    hold_id         BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    ip              TEXT   NOT NULL,
    browser         TEXT   NOT NULL,
    browser_version TEXT   NOT NULL,
    platform        TEXT   NOT NULL,
    referrer        TEXT,
    path            TEXT   NOT NULL,
    language        TEXT,
    country         TEXT,
    person          TEXT
);
