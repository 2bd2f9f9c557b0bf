-- params: workspace_id, rows
-- rows: arrays of a SyslogRow's fields in order (hour, computer, facility, severity, messages); see
-- upsert_usage.sql.
INSERT INTO syslog_hourly (workspace_id, hour, computer, facility, severity, messages)
SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]')
FROM json_each(?)
WHERE true
ON CONFLICT (workspace_id, hour, computer, facility, severity) DO UPDATE
SET messages = syslog_hourly.messages + excluded.messages
