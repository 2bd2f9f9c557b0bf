-- params: workspace_id
SELECT hour, computer, facility, severity, messages
FROM syslog_hourly
WHERE workspace_id = ?
ORDER BY hour, computer, facility, severity
