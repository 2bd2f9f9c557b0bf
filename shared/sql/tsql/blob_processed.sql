-- params: workspace_id, blob_name
SELECT 1 FROM dbo.processed_blobs WHERE workspace_id = ? AND blob_name = ?
