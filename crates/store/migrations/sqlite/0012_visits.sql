-- Browser data lives in daily SQLite files under <data>/visits with the
-- embedded control plane (crates/visits); nothing to create here. The
-- PostgreSQL migration of the same number creates the partitioned table.
SELECT 1;
