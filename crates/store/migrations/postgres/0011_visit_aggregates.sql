-- Anonymous daily statistics of browser data (BRW-3): no IP, no person,
-- groups under the policy's minimum folded or dropped. They outlive the
-- raw visits, which are erased at the policy's period.
CREATE TABLE visit_daily (
    day       TEXT    NOT NULL,
    dimension TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    visits    BIGINT NOT NULL,
    visitors  BIGINT NOT NULL,
    PRIMARY KEY (day, dimension, value)
);
CREATE TABLE visit_days_done (day TEXT PRIMARY KEY);
