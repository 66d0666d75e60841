-- A test upgrade's copy names the database it was made from (issue 11).
ALTER TABLE databases ADD COLUMN test_of TEXT;
