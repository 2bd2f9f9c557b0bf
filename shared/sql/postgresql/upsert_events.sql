-- params: workspace_id, rows
INSERT INTO events_hourly (workspace_id, hour, log_type, computer, event_id, level, events)
SELECT CAST(? AS varchar), r.hour, r.log_type, r.computer, r.event_id, r.level, sum(r.events)
FROM jsonb_to_recordset(CAST(? AS jsonb))
     AS r(hour timestamp, log_type varchar, computer varchar, event_id integer, level varchar, events bigint)
GROUP BY r.hour, r.log_type, r.computer, r.event_id, r.level
ORDER BY r.hour, r.log_type, r.computer, r.event_id, r.level
ON CONFLICT (workspace_id, hour, log_type, computer, event_id, level) DO UPDATE
SET events = events_hourly.events + EXCLUDED.events
