-- params: workspace_id, blob_name, etag, sha256, record_count, workspace_id, blob_name
INSERT INTO dbo.processed_blobs (workspace_id, blob_name, etag, sha256, record_count)
SELECT ?, ?, ?, ?, ?
WHERE NOT EXISTS (
    SELECT 1 FROM dbo.processed_blobs WITH (UPDLOCK, HOLDLOCK)
    WHERE workspace_id = ? AND blob_name = ?
)
