-- params: workspace_id, day, next_day
SELECT blob_name FROM dbo.processed_blobs
WHERE workspace_id = CAST(? AS varchar(36)) AND blob_name >= CAST(? AS varchar(256))
    AND blob_name < CAST(? AS varchar(256))
ORDER BY blob_name
