-- PostgreSQL leaves room on its pages for updated row versions (V0005 there). SQLite updates rows in
-- place in its B-tree pages: nothing to set.
SELECT 1
