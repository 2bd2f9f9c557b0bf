-- params: workspace_id, rows
-- rows: arrays of an EventRow's fields in order (hour, log_type, computer, event_id, level, events); see
-- upsert_usage.sql.
INSERT INTO events_hourly (workspace_id, hour, log_type, computer, event_id, level, events)
SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')
FROM json_each(?)
WHERE true
ON CONFLICT (workspace_id, hour, log_type, computer, event_id, level) DO UPDATE
SET events = events_hourly.events + excluded.events
