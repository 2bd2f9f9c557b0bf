-- params: before, workspace_id
SELECT COUNT(*), MIN(blob_name), SUM(CASE WHEN blob_name < ? THEN 1 ELSE 0 END)
FROM processed_blobs WHERE workspace_id = ?
