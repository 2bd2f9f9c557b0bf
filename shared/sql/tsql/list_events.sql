-- params: workspace_id
SELECT hour, log_type, computer, event_id, level, events
FROM dbo.events_hourly
WHERE workspace_id = CAST(? AS varchar(36))
ORDER BY hour, log_type, computer, event_id, level
