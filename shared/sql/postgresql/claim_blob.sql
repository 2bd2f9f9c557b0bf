-- params: workspace_id, blob_name, etag, sha256, record_count
INSERT INTO processed_blobs (workspace_id, blob_name, etag, sha256, record_count)
VALUES (CAST(? AS varchar), CAST(? AS varchar), CAST(? AS varchar), CAST(? AS char(64)), CAST(? AS integer))
ON CONFLICT (workspace_id, blob_name) DO NOTHING
