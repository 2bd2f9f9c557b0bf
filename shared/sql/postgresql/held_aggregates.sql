-- params: before, workspace_id, before, workspace_id, before, workspace_id, before, workspace_id
SELECT 'usage_hourly', COUNT(*), MIN(hour), SUM(CASE WHEN hour < CAST(? AS timestamp) THEN 1 ELSE 0 END)
FROM usage_hourly WHERE workspace_id = CAST(? AS varchar)
UNION ALL
SELECT 'perf_hourly', COUNT(*), MIN(hour), SUM(CASE WHEN hour < CAST(? AS timestamp) THEN 1 ELSE 0 END)
FROM perf_hourly WHERE workspace_id = CAST(? AS varchar)
UNION ALL
SELECT 'events_hourly', COUNT(*), MIN(hour), SUM(CASE WHEN hour < CAST(? AS timestamp) THEN 1 ELSE 0 END)
FROM events_hourly WHERE workspace_id = CAST(? AS varchar)
UNION ALL
SELECT 'syslog_hourly', COUNT(*), MIN(hour), SUM(CASE WHEN hour < CAST(? AS timestamp) THEN 1 ELSE 0 END)
FROM syslog_hourly WHERE workspace_id = CAST(? AS varchar)
