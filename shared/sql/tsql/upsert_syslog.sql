-- params: workspace_id, rows
-- The source is grouped under the key columns' binary collation (see upsert_usage.sql).
MERGE dbo.syslog_hourly WITH (HOLDLOCK) AS t
USING (
    SELECT CAST(? AS varchar(36)) AS workspace_id, j.hour, j.computer, j.facility, j.severity,
           SUM(j.messages) AS messages
    FROM (
        SELECT o.hour, o.computer COLLATE Latin1_General_100_BIN2 AS computer,
               o.facility COLLATE Latin1_General_100_BIN2 AS facility,
               o.severity COLLATE Latin1_General_100_BIN2 AS severity, o.messages
        FROM OPENJSON(?) WITH (
            hour datetime2(0) '$.hour',
            computer nvarchar(256) '$.computer',
            facility nvarchar(256) '$.facility',
            severity nvarchar(256) '$.severity',
            messages bigint '$.messages'
        ) AS o
    ) AS j
    GROUP BY j.hour, j.computer, j.facility, j.severity
) AS s
ON t.workspace_id = s.workspace_id AND t.hour = s.hour AND t.computer = s.computer
   AND t.facility = s.facility AND t.severity = s.severity
WHEN MATCHED THEN
    UPDATE SET messages = t.messages + s.messages
WHEN NOT MATCHED THEN
    INSERT (workspace_id, hour, computer, facility, severity, messages)
    VALUES (s.workspace_id, s.hour, s.computer, s.facility, s.severity, s.messages);
