-- params: workspace_id, workspace_id, before, batch_rows
DELETE FROM perf_hourly
WHERE workspace_id = ? AND rowid IN (
    SELECT rowid FROM perf_hourly WHERE workspace_id = ? AND hour < ? LIMIT ?
)
