IF OBJECT_ID(N'dbo.usage_hourly', N'U') IS NULL
CREATE TABLE dbo.usage_hourly (
    workspace_id varchar(36) NOT NULL,
    hour datetime2(0) NOT NULL,
    log_type varchar(100) COLLATE Latin1_General_100_BIN2 NOT NULL,
    computer nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    records bigint NOT NULL,
    bytes bigint NOT NULL,
    CONSTRAINT pk_usage_hourly PRIMARY KEY (workspace_id, hour, log_type, computer)
)
GO
IF OBJECT_ID(N'dbo.processed_blobs', N'U') IS NULL
CREATE TABLE dbo.processed_blobs (
    workspace_id varchar(36) NOT NULL,
    blob_name varchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    etag varchar(100) NOT NULL,
    sha256 char(64) NOT NULL,
    record_count int NOT NULL,
    processed_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME(),
    CONSTRAINT pk_processed_blobs PRIMARY KEY (workspace_id, blob_name)
)
