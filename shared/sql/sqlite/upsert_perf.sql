-- params: workspace_id, rows
-- Counter statistics merge: samples and total add up, minimum and maximum keep the extremes (SQLite's
-- two-argument min() and max() are scalar).
INSERT INTO perf_hourly
    (workspace_id, hour, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum)
SELECT ?, json_extract(value, '$.hour') AS h, json_extract(value, '$.computer') AS c,
       json_extract(value, '$.object_name') AS o, json_extract(value, '$.counter_name') AS k,
       json_extract(value, '$.instance_name') AS i, sum(json_extract(value, '$.samples')),
       sum(json_extract(value, '$.total')), min(json_extract(value, '$.minimum')),
       max(json_extract(value, '$.maximum'))
FROM json_each(?)
WHERE true
GROUP BY h, c, o, k, i
ON CONFLICT (workspace_id, hour, computer, object_name, counter_name, instance_name) DO UPDATE
SET samples = perf_hourly.samples + excluded.samples,
    total = perf_hourly.total + excluded.total,
    minimum = min(perf_hourly.minimum, excluded.minimum),
    maximum = max(perf_hourly.maximum, excluded.maximum)
