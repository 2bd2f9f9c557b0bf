-- params: workspace_id, rows
-- The source is grouped so it never holds a key twice, whatever the collation makes equal.
MERGE dbo.usage_hourly WITH (HOLDLOCK) AS t
USING (
    SELECT CAST(? AS varchar(36)) AS workspace_id, j.hour, j.log_type, j.computer,
           SUM(j.records) AS records, SUM(j.bytes) AS bytes
    FROM OPENJSON(?) WITH (
        hour datetime2(0) '$.hour',
        log_type varchar(100) '$.log_type',
        computer nvarchar(256) '$.computer',
        records bigint '$.records',
        bytes bigint '$.bytes'
    ) AS j
    GROUP BY j.hour, j.log_type, j.computer
) AS s
ON t.workspace_id = s.workspace_id AND t.hour = s.hour AND t.log_type = s.log_type AND t.computer = s.computer
WHEN MATCHED THEN
    UPDATE SET records = t.records + s.records, bytes = t.bytes + s.bytes
WHEN NOT MATCHED THEN
    INSERT (workspace_id, hour, log_type, computer, records, bytes)
    VALUES (s.workspace_id, s.hour, s.log_type, s.computer, s.records, s.bytes);
