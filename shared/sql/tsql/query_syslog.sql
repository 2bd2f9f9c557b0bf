-- params: limit, granularity, workspace_id, from, to, key_1, key_1, key_2, key_2, key_3, key_3, after_time, after_time, after_time, after_1, after_1, after_2, after_2, after_3
-- One page of the syslog aggregate (shared.query): hourly rows, or whole days summed (granularity
-- 'day'), of the hours in [from, to), after the previous page's last key (after_time NULL: the first
-- page), in key order. key_N filters the Nth key column (computer, facility, severity; NULL: any
-- value), after_N is its value in the previous page's last key.
-- Row values cannot be compared in T-SQL: the keyset condition is spelled out.
SELECT TOP (CAST(? AS int)) bucket, computer, facility, severity, messages
FROM (
    SELECT bucket, computer, facility, severity, SUM(messages) AS messages
    FROM (
        SELECT CASE WHEN CAST(? AS nvarchar(256)) = 'day' THEN CAST(CAST(hour AS date) AS datetime2) ELSE hour END AS bucket, computer, facility, severity, messages
        FROM dbo.syslog_hourly
        WHERE workspace_id = CAST(? AS varchar(36))
          AND hour >= CAST(? AS datetime2)
          AND hour < CAST(? AS datetime2)
          AND (CAST(? AS nvarchar(256)) IS NULL OR computer = CAST(? AS nvarchar(256)))
          AND (CAST(? AS nvarchar(256)) IS NULL OR facility = CAST(? AS nvarchar(256)))
          AND (CAST(? AS nvarchar(256)) IS NULL OR severity = CAST(? AS nvarchar(256)))
    ) AS hours
    GROUP BY bucket, computer, facility, severity
) AS buckets
WHERE CAST(? AS datetime2) IS NULL OR bucket > CAST(? AS datetime2) OR (bucket = CAST(? AS datetime2) AND (computer > CAST(? AS nvarchar(256)) OR (computer = CAST(? AS nvarchar(256)) AND (facility > CAST(? AS nvarchar(256)) OR (facility = CAST(? AS nvarchar(256)) AND (severity > CAST(? AS nvarchar(256))))))))
ORDER BY bucket, computer, facility, severity
