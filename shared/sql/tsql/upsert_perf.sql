-- params: workspace_id, rows
-- Counter statistics merge: samples and total add up, minimum and maximum keep the extremes. The source
-- is grouped under the key columns' binary collation (see upsert_usage.sql).
MERGE dbo.perf_hourly WITH (HOLDLOCK) AS t
USING (
    SELECT CAST(? AS varchar(36)) AS workspace_id, j.hour, j.computer, j.object_name, j.counter_name,
           j.instance_name, SUM(j.samples) AS samples, SUM(j.total) AS total,
           MIN(j.minimum) AS minimum, MAX(j.maximum) AS maximum
    FROM (
        SELECT o.hour, o.computer COLLATE Latin1_General_100_BIN2 AS computer,
               o.object_name COLLATE Latin1_General_100_BIN2 AS object_name,
               o.counter_name COLLATE Latin1_General_100_BIN2 AS counter_name,
               o.instance_name COLLATE Latin1_General_100_BIN2 AS instance_name,
               o.samples, o.total, o.minimum, o.maximum
        FROM OPENJSON(?) WITH (
            hour datetime2(0) '$.hour',
            computer nvarchar(256) '$.computer',
            object_name nvarchar(256) '$.object_name',
            counter_name nvarchar(256) '$.counter_name',
            instance_name nvarchar(256) '$.instance_name',
            samples bigint '$.samples',
            total float '$.total',
            minimum float '$.minimum',
            maximum float '$.maximum'
        ) AS o
    ) AS j
    GROUP BY j.hour, j.computer, j.object_name, j.counter_name, j.instance_name
) AS s
ON t.workspace_id = s.workspace_id AND t.hour = s.hour AND t.computer = s.computer
   AND t.object_name = s.object_name AND t.counter_name = s.counter_name AND t.instance_name = s.instance_name
WHEN MATCHED THEN
    UPDATE SET samples = t.samples + s.samples,
               total = t.total + s.total,
               minimum = CASE WHEN s.minimum < t.minimum THEN s.minimum ELSE t.minimum END,
               maximum = CASE WHEN s.maximum > t.maximum THEN s.maximum ELSE t.maximum END
WHEN NOT MATCHED THEN
    INSERT (workspace_id, hour, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum)
    VALUES (s.workspace_id, s.hour, s.computer, s.object_name, s.counter_name, s.instance_name,
            s.samples, s.total, s.minimum, s.maximum);
