-- params: granularity, workspace_id, from, to, key_1, key_1, key_2, key_2, key_3, key_3, key_4, key_4, after_time, after_time, after_1, after_2, after_3, after_4, limit
-- One page of the perf aggregate (shared.query): hourly rows, or whole days summed (granularity
-- 'day'), of the hours in [from, to), after the previous page's last key (after_time NULL: the first
-- page), in key order. key_N filters the Nth key column (computer, object_name, counter_name, instance_name; NULL: any
-- value), after_N is its value in the previous page's last key.
SELECT bucket, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum
FROM (
    SELECT bucket, computer, object_name, counter_name, instance_name, SUM(samples) AS samples, SUM(total) AS total, MIN(minimum) AS minimum, MAX(maximum) AS maximum
    FROM (
        SELECT date_trunc(CAST(? AS text), hour) AS bucket, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum
        FROM perf_hourly
        WHERE workspace_id = CAST(? AS text)
          AND hour >= CAST(? AS timestamp)
          AND hour < CAST(? AS timestamp)
          AND (CAST(? AS text) IS NULL OR computer = CAST(? AS text))
          AND (CAST(? AS text) IS NULL OR object_name = CAST(? AS text))
          AND (CAST(? AS text) IS NULL OR counter_name = CAST(? AS text))
          AND (CAST(? AS text) IS NULL OR instance_name = CAST(? AS text))
    ) AS hours
    GROUP BY bucket, computer, object_name, counter_name, instance_name
) AS buckets
WHERE CAST(? AS timestamp) IS NULL OR (bucket, computer, object_name, counter_name, instance_name) > (CAST(? AS timestamp), CAST(? AS text), CAST(? AS text), CAST(? AS text), CAST(? AS text))
ORDER BY bucket, computer, object_name, counter_name, instance_name
LIMIT CAST(? AS integer)
