-- params: workspace_id, rows
-- rows: arrays of a PerfRow's fields in order (hour, computer, object_name, counter_name, instance_name,
-- samples, total, minimum, maximum); see upsert_usage.sql. Counter statistics merge: samples and total
-- add up, minimum and maximum keep the extremes (SQLite's two-argument min() and max() are scalar).
INSERT INTO perf_hourly
    (workspace_id, hour, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum)
SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
       json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]')
FROM json_each(?)
WHERE true
ON CONFLICT (workspace_id, hour, computer, object_name, counter_name, instance_name) DO UPDATE
SET samples = perf_hourly.samples + excluded.samples,
    total = perf_hourly.total + excluded.total,
    minimum = min(perf_hourly.minimum, excluded.minimum),
    maximum = max(perf_hourly.maximum, excluded.maximum)
