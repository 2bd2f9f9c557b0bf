-- params: workspace_id, rows
-- The source is grouped so it never holds a key twice, and grouped under the key columns' own binary
-- collation: OPENJSON's columns take the database default, which may be case-insensitive and would
-- fold 'WEB-1' and 'web-1' (two keys of the table) into one.
MERGE dbo.usage_hourly WITH (HOLDLOCK) AS t
USING (
    SELECT CAST(? AS varchar(36)) AS workspace_id, j.hour, j.log_type, j.computer,
           SUM(j.records) AS records, SUM(j.bytes) AS bytes
    FROM (
        SELECT o.hour, o.log_type COLLATE Latin1_General_100_BIN2 AS log_type,
               o.computer COLLATE Latin1_General_100_BIN2 AS computer, o.records, o.bytes
        FROM OPENJSON(?) WITH (
            hour datetime2(0) '$.hour',
            log_type varchar(100) '$.log_type',
            computer nvarchar(256) '$.computer',
            records bigint '$.records',
            bytes bigint '$.bytes'
        ) AS o
    ) AS j
    GROUP BY j.hour, j.log_type, j.computer
) AS s
ON t.workspace_id = s.workspace_id AND t.hour = s.hour AND t.log_type = s.log_type AND t.computer = s.computer
WHEN MATCHED THEN
    UPDATE SET records = t.records + s.records, bytes = t.bytes + s.bytes
WHEN NOT MATCHED THEN
    INSERT (workspace_id, hour, log_type, computer, records, bytes)
    VALUES (s.workspace_id, s.hour, s.log_type, s.computer, s.records, s.bytes);
