-- params: workspace_id, day, next_day
SELECT blob_name FROM processed_blobs
WHERE workspace_id = CAST(? AS varchar) AND blob_name >= CAST(? AS varchar) AND blob_name < CAST(? AS varchar)
ORDER BY blob_name
