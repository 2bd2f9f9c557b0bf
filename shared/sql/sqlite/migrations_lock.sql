-- BEGIN IMMEDIATE already holds SQLite's single write lock.
SELECT 1
