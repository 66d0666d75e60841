-- The node whose disk holds each customer database (issue 30): requests for
-- it reach that node, from whichever node they arrive at. NULL: a database
-- made before nodes were named, on the node serving its region.
ALTER TABLE databases ADD COLUMN home_node TEXT;
