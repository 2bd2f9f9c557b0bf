-- params: limit, granularity, workspace_id, from, to, key_1, key_1, key_2, key_2, key_3, key_3, key_4, key_4, after_time, after_time, after_time, after_1, after_1, after_2, after_2, after_3, after_3, after_4
-- One page of the events aggregate (shared.query): hourly rows, or whole days summed (granularity
-- 'day'), of the hours in [from, to), after the previous page's last key (after_time NULL: the first
-- page), in key order. key_N filters the Nth key column (log_type, computer, event_id, level; NULL: any
-- value), after_N is its value in the previous page's last key.
-- Row values cannot be compared in T-SQL: the keyset condition is spelled out.
SELECT TOP (CAST(? AS int)) bucket, log_type, computer, event_id, level, events
FROM (
    SELECT bucket, log_type, computer, event_id, level, SUM(events) AS events
    FROM (
        SELECT CASE WHEN CAST(? AS nvarchar(256)) = 'day' THEN CAST(CAST(hour AS date) AS datetime2) ELSE hour END AS bucket, log_type, computer, event_id, level, events
        FROM dbo.events_hourly
        WHERE workspace_id = CAST(? AS varchar(36))
          AND hour >= CAST(? AS datetime2)
          AND hour < CAST(? AS datetime2)
          AND (CAST(? AS nvarchar(256)) IS NULL OR log_type = CAST(? AS nvarchar(256)))
          AND (CAST(? AS nvarchar(256)) IS NULL OR computer = CAST(? AS nvarchar(256)))
          AND (CAST(? AS int) IS NULL OR event_id = CAST(? AS int))
          AND (CAST(? AS nvarchar(256)) IS NULL OR level = CAST(? AS nvarchar(256)))
    ) AS hours
    GROUP BY bucket, log_type, computer, event_id, level
) AS buckets
WHERE CAST(? AS datetime2) IS NULL OR bucket > CAST(? AS datetime2) OR (bucket = CAST(? AS datetime2) AND (log_type > CAST(? AS nvarchar(256)) OR (log_type = CAST(? AS nvarchar(256)) AND (computer > CAST(? AS nvarchar(256)) OR (computer = CAST(? AS nvarchar(256)) AND (event_id > CAST(? AS int) OR (event_id = CAST(? AS int) AND (level > CAST(? AS nvarchar(256))))))))))
ORDER BY bucket, log_type, computer, event_id, level
