-- params: workspace_id
SELECT hour, log_type, computer, records, bytes
FROM dbo.usage_hourly
WHERE workspace_id = CAST(? AS varchar(36))
ORDER BY hour, log_type, computer
