-- SQLite has no row-level security and no roles: whoever opens the file reads all of it. The embedded
-- database is for a local run only; there the reader API (shared.sql.ReaderSession) still scopes every
-- query by its one workspace, but nothing in the database enforces it. This migration exists so the
-- dialects keep the same version numbers.
SELECT 1
