-- PostgreSQL leaves room on its pages for updated row versions (V0005 there). Azure SQL updates these
-- fixed-size rows in place, so the aggregate tables keep their default fill factor.
SELECT 1
