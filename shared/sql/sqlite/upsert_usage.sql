-- params: workspace_id, rows
-- `WHERE true` resolves SQLite's parsing ambiguity between a join's ON and the upsert's ON CONFLICT.
INSERT INTO usage_hourly (workspace_id, hour, log_type, computer, records, bytes)
SELECT ?, json_extract(value, '$.hour') AS h, json_extract(value, '$.log_type') AS t,
       json_extract(value, '$.computer') AS c, sum(json_extract(value, '$.records')),
       sum(json_extract(value, '$.bytes'))
FROM json_each(?)
WHERE true
GROUP BY h, t, c
ON CONFLICT (workspace_id, hour, log_type, computer) DO UPDATE
SET records = usage_hourly.records + excluded.records,
    bytes = usage_hourly.bytes + excluded.bytes
