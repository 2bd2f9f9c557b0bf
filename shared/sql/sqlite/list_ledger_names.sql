-- params: workspace_id, day, next_day
SELECT blob_name FROM processed_blobs
WHERE workspace_id = ? AND blob_name >= ? AND blob_name < ?
ORDER BY blob_name
