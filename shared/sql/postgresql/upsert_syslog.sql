-- params: workspace_id, rows
INSERT INTO syslog_hourly (workspace_id, hour, computer, facility, severity, messages)
SELECT CAST(? AS varchar), r.hour, r.computer, r.facility, r.severity, sum(r.messages)
FROM jsonb_to_recordset(CAST(? AS jsonb))
     AS r(hour timestamp, computer varchar, facility varchar, severity varchar, messages bigint)
GROUP BY r.hour, r.computer, r.facility, r.severity
ORDER BY r.hour, r.computer, r.facility, r.severity
ON CONFLICT (workspace_id, hour, computer, facility, severity) DO UPDATE
SET messages = syslog_hourly.messages + EXCLUDED.messages
