-- Anonymous daily statistics of browser data (BRW-3): no IP, no person,
-- groups under the policy's minimum folded or dropped. They outlive the
-- raw visits, which are erased at the policy's period.
CREATE TABLE visit_daily (
    day       TEXT    NOT NULL,
    dimension TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    visits    INTEGER NOT NULL,
    visitors  INTEGER NOT NULL,
    PRIMARY KEY (day, dimension, value)
);
CREATE TABLE visit_days_done (day TEXT PRIMARY KEY);
