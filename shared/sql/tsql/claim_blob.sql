-- params: workspace_id, blob_name, etag, sha256, record_count, workspace_id, blob_name
-- Parameters are cast to the columns' types: an nvarchar parameter would force a scan under the
-- range locks that UPDLOCK, HOLDLOCK take, serialising every processor.
INSERT INTO dbo.processed_blobs (workspace_id, blob_name, etag, sha256, record_count)
SELECT CAST(? AS varchar(36)), CAST(? AS varchar(256)), CAST(? AS varchar(100)), CAST(? AS char(64)), ?
WHERE NOT EXISTS (
    SELECT 1 FROM dbo.processed_blobs WITH (UPDLOCK, HOLDLOCK)
    WHERE workspace_id = CAST(? AS varchar(36)) AND blob_name = CAST(? AS varchar(256))
)
