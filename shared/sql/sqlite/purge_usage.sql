-- params: workspace_id, workspace_id, before, batch_rows
DELETE FROM usage_hourly
WHERE workspace_id = ? AND rowid IN (
    SELECT rowid FROM usage_hourly WHERE workspace_id = ? AND hour < ? LIMIT ?
)
