-- params: before, workspace_id, before, workspace_id, before, workspace_id, before, workspace_id
SELECT 'usage_hourly', COUNT_BIG(*), MIN(hour), SUM(CASE WHEN hour < CAST(? AS datetime2(0)) THEN CAST(1 AS bigint) ELSE 0 END)
FROM dbo.usage_hourly WHERE workspace_id = CAST(? AS varchar(36))
UNION ALL
SELECT 'perf_hourly', COUNT_BIG(*), MIN(hour), SUM(CASE WHEN hour < CAST(? AS datetime2(0)) THEN CAST(1 AS bigint) ELSE 0 END)
FROM dbo.perf_hourly WHERE workspace_id = CAST(? AS varchar(36))
UNION ALL
SELECT 'events_hourly', COUNT_BIG(*), MIN(hour), SUM(CASE WHEN hour < CAST(? AS datetime2(0)) THEN CAST(1 AS bigint) ELSE 0 END)
FROM dbo.events_hourly WHERE workspace_id = CAST(? AS varchar(36))
UNION ALL
SELECT 'syslog_hourly', COUNT_BIG(*), MIN(hour), SUM(CASE WHEN hour < CAST(? AS datetime2(0)) THEN CAST(1 AS bigint) ELSE 0 END)
FROM dbo.syslog_hourly WHERE workspace_id = CAST(? AS varchar(36))
