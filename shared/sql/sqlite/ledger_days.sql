-- params: workspace_id, since
SELECT DISTINCT substr(blob_name, 1, 15) FROM processed_blobs
WHERE workspace_id = ? AND blob_name >= ?
ORDER BY 1
