-- params: workspace_id, blob_name
SELECT 1 FROM dbo.processed_blobs
WHERE workspace_id = CAST(? AS varchar(36)) AND blob_name = CAST(? AS varchar(256))
