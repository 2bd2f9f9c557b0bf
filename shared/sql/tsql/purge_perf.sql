-- params: batch_rows, workspace_id, before
-- DELETE TOP (n), written through a CTE: sqlglot misreads DELETE TOP (n) as a table named TOP.
WITH doomed AS (
    SELECT TOP (CAST(? AS int)) hour FROM dbo.perf_hourly
    WHERE workspace_id = CAST(? AS varchar(36)) AND hour < CAST(? AS datetime2(0))
)
DELETE FROM doomed
