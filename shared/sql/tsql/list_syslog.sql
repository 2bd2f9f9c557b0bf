-- params: workspace_id
SELECT hour, computer, facility, severity, messages
FROM dbo.syslog_hourly
WHERE workspace_id = CAST(? AS varchar(36))
ORDER BY hour, computer, facility, severity
