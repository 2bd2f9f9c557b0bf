-- Reader sessions (PostgreSQL, Azure SQL: a reader principal and a binding to one workspace). SQLite has
-- neither principals nor row-level security: its reader sessions are scoped by their statements alone.
SELECT 1
