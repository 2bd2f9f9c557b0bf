CREATE TABLE IF NOT EXISTS usage_hourly (
    workspace_id TEXT NOT NULL,
    hour TEXT NOT NULL,
    log_type TEXT NOT NULL,
    computer TEXT NOT NULL,
    records INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, hour, log_type, computer)
)
GO
CREATE TABLE IF NOT EXISTS processed_blobs (
    workspace_id TEXT NOT NULL,
    blob_name TEXT NOT NULL,
    etag TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    record_count INTEGER NOT NULL,
    processed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S', 'now')),
    PRIMARY KEY (workspace_id, blob_name)
)
