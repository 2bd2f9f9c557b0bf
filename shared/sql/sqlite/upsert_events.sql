-- params: workspace_id, rows
INSERT INTO events_hourly (workspace_id, hour, log_type, computer, event_id, level, events)
SELECT ?, json_extract(value, '$.hour') AS h, json_extract(value, '$.log_type') AS t,
       json_extract(value, '$.computer') AS c, json_extract(value, '$.event_id') AS e,
       json_extract(value, '$.level') AS l, sum(json_extract(value, '$.events'))
FROM json_each(?)
WHERE true
GROUP BY h, t, c, e, l
ON CONFLICT (workspace_id, hour, log_type, computer, event_id, level) DO UPDATE
SET events = events_hourly.events + excluded.events
