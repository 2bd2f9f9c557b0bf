-- params: workspace_id
SELECT hour, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum
FROM perf_hourly
WHERE workspace_id = ?
ORDER BY hour, computer, object_name, counter_name, instance_name
