-- params: workspace_id, rows
INSERT INTO syslog_hourly (workspace_id, hour, computer, facility, severity, messages)
SELECT ?, json_extract(value, '$.hour') AS h, json_extract(value, '$.computer') AS c,
       json_extract(value, '$.facility') AS f, json_extract(value, '$.severity') AS s,
       sum(json_extract(value, '$.messages'))
FROM json_each(?)
WHERE true
GROUP BY h, c, f, s
ON CONFLICT (workspace_id, hour, computer, facility, severity) DO UPDATE
SET messages = syslog_hourly.messages + excluded.messages
