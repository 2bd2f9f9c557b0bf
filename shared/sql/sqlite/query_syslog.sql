-- params: granularity, workspace_id, from, to, key_1, key_1, key_2, key_2, key_3, key_3, after_time, after_time, after_1, after_2, after_3, limit
-- One page of the syslog aggregate (shared.query): hourly rows, or whole days summed (granularity
-- 'day'), of the hours in [from, to), after the previous page's last key (after_time NULL: the first
-- page), in key order. key_N filters the Nth key column (computer, facility, severity; NULL: any
-- value), after_N is its value in the previous page's last key.
SELECT bucket, computer, facility, severity, messages
FROM (
    SELECT bucket, computer, facility, severity, SUM(messages) AS messages
    FROM (
        SELECT CASE WHEN ? = 'day' THEN substr(hour, 1, 10) || 'T00:00:00' ELSE hour END AS bucket, computer, facility, severity, messages
        FROM syslog_hourly
        WHERE workspace_id = ?
          AND hour >= ?
          AND hour < ?
          AND (? IS NULL OR computer = ?)
          AND (? IS NULL OR facility = ?)
          AND (? IS NULL OR severity = ?)
    ) AS hours
    GROUP BY bucket, computer, facility, severity
) AS buckets
WHERE ? IS NULL OR (bucket, computer, facility, severity) > (?, ?, ?, ?)
ORDER BY bucket, computer, facility, severity
LIMIT ?
