-- params: workspace_id
SELECT hour, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum
FROM dbo.perf_hourly
WHERE workspace_id = CAST(? AS varchar(36))
ORDER BY hour, computer, object_name, counter_name, instance_name
