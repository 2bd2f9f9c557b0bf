-- params: workspace_id, rows
INSERT INTO usage_hourly (workspace_id, hour, log_type, computer, records, bytes)
SELECT CAST(? AS varchar), r.hour, r.log_type, r.computer, r.records, r.bytes
FROM json_to_recordset(CAST(? AS json))
     AS r(hour timestamp, log_type varchar, computer varchar, records bigint, bytes bigint)
ON CONFLICT (workspace_id, hour, log_type, computer) DO UPDATE
SET records = usage_hourly.records + EXCLUDED.records,
    bytes = usage_hourly.bytes + EXCLUDED.bytes
