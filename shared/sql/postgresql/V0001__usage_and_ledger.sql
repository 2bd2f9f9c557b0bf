CREATE TABLE IF NOT EXISTS usage_hourly (
    workspace_id varchar(36) NOT NULL,
    hour timestamp NOT NULL,
    log_type varchar(100) NOT NULL,
    computer varchar(256) NOT NULL,
    records bigint NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (workspace_id, hour, log_type, computer)
)
GO
CREATE TABLE IF NOT EXISTS processed_blobs (
    workspace_id varchar(36) NOT NULL,
    blob_name varchar(256) NOT NULL,
    etag varchar(100) NOT NULL,
    sha256 char(64) NOT NULL,
    record_count integer NOT NULL,
    processed_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    PRIMARY KEY (workspace_id, blob_name)
)
