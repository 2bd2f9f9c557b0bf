-- params: workspace_id
SELECT hour, log_type, computer, event_id, level, events
FROM events_hourly
WHERE workspace_id = ?
ORDER BY hour, log_type, computer, event_id, level
