-- params: granularity, workspace_id, from, to, key_1, key_1, key_2, key_2, key_3, key_3, key_4, key_4, after_time, after_time, after_1, after_2, after_3, after_4, limit
-- One page of the perf aggregate (shared.query): hourly rows, or whole days summed (granularity
-- 'day'), of the hours in [from, to), after the previous page's last key (after_time NULL: the first
-- page), in key order. key_N filters the Nth key column (computer, object_name, counter_name, instance_name; NULL: any
-- value), after_N is its value in the previous page's last key.
SELECT bucket, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum
FROM (
    SELECT bucket, computer, object_name, counter_name, instance_name, SUM(samples) AS samples, SUM(total) AS total, MIN(minimum) AS minimum, MAX(maximum) AS maximum
    FROM (
        SELECT CASE WHEN ? = 'day' THEN substr(hour, 1, 10) || 'T00:00:00' ELSE hour END AS bucket, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum
        FROM perf_hourly
        WHERE workspace_id = ?
          AND hour >= ?
          AND hour < ?
          AND (? IS NULL OR computer = ?)
          AND (? IS NULL OR object_name = ?)
          AND (? IS NULL OR counter_name = ?)
          AND (? IS NULL OR instance_name = ?)
    ) AS hours
    GROUP BY bucket, computer, object_name, counter_name, instance_name
) AS buckets
WHERE ? IS NULL OR (bucket, computer, object_name, counter_name, instance_name) > (?, ?, ?, ?, ?)
ORDER BY bucket, computer, object_name, counter_name, instance_name
LIMIT ?
