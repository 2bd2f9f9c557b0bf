-- params: before, workspace_id
SELECT COUNT_BIG(*), MIN(blob_name), SUM(CASE WHEN blob_name < CAST(? AS varchar(256)) THEN CAST(1 AS bigint) ELSE 0 END)
FROM dbo.processed_blobs WHERE workspace_id = CAST(? AS varchar(36))
