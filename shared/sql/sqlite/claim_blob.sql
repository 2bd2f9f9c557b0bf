-- params: workspace_id, blob_name, etag, sha256, record_count
INSERT INTO processed_blobs (workspace_id, blob_name, etag, sha256, record_count)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (workspace_id, blob_name) DO NOTHING
