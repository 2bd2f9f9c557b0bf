-- params: granularity, workspace_id, from, to, key_1, key_1, key_2, key_2, key_3, key_3, after_time, after_time, after_1, after_2, after_3, limit
-- One page of the syslog aggregate (shared.query): hourly rows, or whole days summed (granularity
-- 'day'), of the hours in [from, to), after the previous page's last key (after_time NULL: the first
-- page), in key order. key_N filters the Nth key column (computer, facility, severity; NULL: any
-- value), after_N is its value in the previous page's last key.
SELECT bucket, computer, facility, severity, messages
FROM (
    SELECT bucket, computer, facility, severity, SUM(messages) AS messages
    FROM (
        SELECT date_trunc(CAST(? AS text), hour) AS bucket, computer, facility, severity, messages
        FROM syslog_hourly
        WHERE workspace_id = CAST(? AS text)
          AND hour >= CAST(? AS timestamp)
          AND hour < CAST(? AS timestamp)
          AND (CAST(? AS text) IS NULL OR computer = CAST(? AS text))
          AND (CAST(? AS text) IS NULL OR facility = CAST(? AS text))
          AND (CAST(? AS text) IS NULL OR severity = CAST(? AS text))
    ) AS hours
    GROUP BY bucket, computer, facility, severity
) AS buckets
WHERE CAST(? AS timestamp) IS NULL OR (bucket, computer, facility, severity) > (CAST(? AS timestamp), CAST(? AS text), CAST(? AS text), CAST(? AS text))
ORDER BY bucket, computer, facility, severity
LIMIT CAST(? AS integer)
