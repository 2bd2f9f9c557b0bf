-- params: workspace_id, rows
-- The source is grouped under the key columns' binary collation (see upsert_usage.sql).
MERGE dbo.events_hourly WITH (HOLDLOCK) AS t
USING (
    SELECT CAST(? AS varchar(36)) AS workspace_id, j.hour, j.log_type, j.computer, j.event_id, j.level,
           SUM(j.events) AS events
    FROM (
        SELECT o.hour, o.log_type COLLATE Latin1_General_100_BIN2 AS log_type,
               o.computer COLLATE Latin1_General_100_BIN2 AS computer, o.event_id,
               o.level COLLATE Latin1_General_100_BIN2 AS level, o.events
        FROM OPENJSON(?) WITH (
            hour datetime2(0) '$.hour',
            log_type varchar(100) '$.log_type',
            computer nvarchar(256) '$.computer',
            event_id int '$.event_id',
            level nvarchar(256) '$.level',
            events bigint '$.events'
        ) AS o
    ) AS j
    GROUP BY j.hour, j.log_type, j.computer, j.event_id, j.level
) AS s
ON t.workspace_id = s.workspace_id AND t.hour = s.hour AND t.log_type = s.log_type
   AND t.computer = s.computer AND t.event_id = s.event_id AND t.level = s.level
WHEN MATCHED THEN
    UPDATE SET events = t.events + s.events
WHEN NOT MATCHED THEN
    INSERT (workspace_id, hour, log_type, computer, event_id, level, events)
    VALUES (s.workspace_id, s.hour, s.log_type, s.computer, s.event_id, s.level, s.events);
