-- A job about one node's databases (its backups, its export sweep, a move
-- of one of its databases) names that node and only it runs the job
-- (issue 30); NULL: any node.
ALTER TABLE jobs ADD COLUMN node TEXT;
