-- params: workspace_id, rows
-- Counter statistics merge: samples and total add up, minimum and maximum keep the extremes.
INSERT INTO perf_hourly
    (workspace_id, hour, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum)
SELECT CAST(? AS varchar), r.hour, r.computer, r.object_name, r.counter_name, r.instance_name,
       sum(r.samples), sum(r.total), min(r.minimum), max(r.maximum)
FROM jsonb_to_recordset(CAST(? AS jsonb))
     AS r(hour timestamp, computer varchar, object_name varchar, counter_name varchar, instance_name varchar,
          samples bigint, total double precision, minimum double precision, maximum double precision)
GROUP BY r.hour, r.computer, r.object_name, r.counter_name, r.instance_name
ORDER BY r.hour, r.computer, r.object_name, r.counter_name, r.instance_name
ON CONFLICT (workspace_id, hour, computer, object_name, counter_name, instance_name) DO UPDATE
SET samples = perf_hourly.samples + EXCLUDED.samples,
    total = perf_hourly.total + EXCLUDED.total,
    minimum = least(perf_hourly.minimum, EXCLUDED.minimum),
    maximum = greatest(perf_hourly.maximum, EXCLUDED.maximum)
