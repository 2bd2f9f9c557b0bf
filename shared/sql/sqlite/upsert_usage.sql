-- params: workspace_id, rows
INSERT INTO usage_hourly (workspace_id, hour, log_type, computer, records, bytes)
SELECT ?, json_extract(value, '$.hour'), json_extract(value, '$.log_type'),
       json_extract(value, '$.computer'), json_extract(value, '$.records'), json_extract(value, '$.bytes')
FROM json_each(?)
WHERE true
ON CONFLICT (workspace_id, hour, log_type, computer) DO UPDATE
SET records = usage_hourly.records + excluded.records,
    bytes = usage_hourly.bytes + excluded.bytes
