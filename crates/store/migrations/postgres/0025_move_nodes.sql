-- A move is a transfer between two nodes (issue 30, item 5): the node that
-- sends the database (it erases its copy once the home has switched) and the
-- node that receives it. NULL on both: a move within one node.
ALTER TABLE databases ADD COLUMN moving_source TEXT;
ALTER TABLE databases ADD COLUMN moving_target TEXT;
-- A draining node takes no new database; its databases move to other nodes
-- of their region (`seldesk node drain`).
ALTER TABLE nodes ADD COLUMN draining BIGINT NOT NULL DEFAULT 0;
