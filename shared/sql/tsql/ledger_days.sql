-- params: workspace_id, since
SELECT DISTINCT SUBSTRING(blob_name, 1, 15) FROM dbo.processed_blobs
WHERE workspace_id = CAST(? AS varchar(36)) AND blob_name >= CAST(? AS varchar(256))
ORDER BY 1
