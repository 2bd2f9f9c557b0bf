-- params: workspace_id, rows
-- rows: a JSON array of arrays, each a UsageRow's fields in order (hour, log_type, computer, records,
-- bytes): shorter to parse than objects, which json_extract parses again for every field. The rows'
-- keys are distinct, and a repeated key would update the row its first occurrence inserted.
-- `WHERE true` resolves SQLite's parsing ambiguity between a join's ON and the upsert's ON CONFLICT.
INSERT INTO usage_hourly (workspace_id, hour, log_type, computer, records, bytes)
SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]')
FROM json_each(?)
WHERE true
ON CONFLICT (workspace_id, hour, log_type, computer) DO UPDATE
SET records = usage_hourly.records + excluded.records,
    bytes = usage_hourly.bytes + excluded.bytes
