-- Pages per visit for visitors who accepted analytics cookies (CK-2): the
-- hash of the 30-minute analytics cookie, NULL for everyone else.
ALTER TABLE visits ADD COLUMN visit TEXT;
ALTER TABLE visits_held ADD COLUMN visit TEXT;

-- Account closure ("kept 30 days after your account is closed"): a third
-- status and when it was closed, and the warning before an idle account is
-- erased.
ALTER TABLE accounts DROP CONSTRAINT accounts_status_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_status_check CHECK (status IN ('active', 'erasing', 'closed'));
ALTER TABLE accounts ADD COLUMN closed_at BIGINT;
ALTER TABLE accounts ADD COLUMN idle_warned_at BIGINT;
CREATE INDEX accounts_closed ON accounts (status, closed_at);
