-- params: workspace_id, since
SELECT DISTINCT substr(blob_name, 1, 15) FROM processed_blobs
WHERE workspace_id = CAST(? AS varchar) AND blob_name >= CAST(? AS varchar)
ORDER BY 1
