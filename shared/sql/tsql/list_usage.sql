-- params: workspace_id
SELECT hour, log_type, computer, records, bytes
FROM dbo.usage_hourly
WHERE workspace_id = ?
ORDER BY hour, log_type, computer
