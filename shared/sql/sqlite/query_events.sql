-- params: granularity, workspace_id, from, to, key_1, key_1, key_2, key_2, key_3, key_3, key_4, key_4, after_time, after_time, after_1, after_2, after_3, after_4, limit
-- One page of the events aggregate (shared.query): hourly rows, or whole days summed (granularity
-- 'day'), of the hours in [from, to), after the previous page's last key (after_time NULL: the first
-- page), in key order. key_N filters the Nth key column (log_type, computer, event_id, level; NULL: any
-- value), after_N is its value in the previous page's last key.
SELECT bucket, log_type, computer, event_id, level, events
FROM (
    SELECT bucket, log_type, computer, event_id, level, SUM(events) AS events
    FROM (
        SELECT CASE WHEN ? = 'day' THEN substr(hour, 1, 10) || 'T00:00:00' ELSE hour END AS bucket, log_type, computer, event_id, level, events
        FROM events_hourly
        WHERE workspace_id = ?
          AND hour >= ?
          AND hour < ?
          AND (? IS NULL OR log_type = ?)
          AND (? IS NULL OR computer = ?)
          AND (? IS NULL OR event_id = ?)
          AND (? IS NULL OR level = ?)
    ) AS hours
    GROUP BY bucket, log_type, computer, event_id, level
) AS buckets
WHERE ? IS NULL OR (bucket, log_type, computer, event_id, level) > (?, ?, ?, ?, ?)
ORDER BY bucket, log_type, computer, event_id, level
LIMIT ?
