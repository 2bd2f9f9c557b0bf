-- The primary keys are NONCLUSTERED: SQL Server caps a clustered key at 900 bytes and a nonclustered
-- one at 1700, and these keys hold up to three or four nvarchar(256) names (512 bytes each). The
-- clustered index is (workspace_id, hour), the order in which rows are read and retention deletes them.
-- perf_hourly's key can still reach 2090 bytes in theory (four names of 256 characters each); a row
-- whose key is over 1700 bytes is refused, and with it the blob (DatabaseError, not retried).
IF OBJECT_ID(N'dbo.perf_hourly', N'U') IS NULL
CREATE TABLE dbo.perf_hourly (
    workspace_id varchar(36) NOT NULL,
    hour datetime2(0) NOT NULL,
    computer nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    object_name nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    counter_name nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    instance_name nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    samples bigint NOT NULL,
    total float NOT NULL,
    minimum float NOT NULL,
    maximum float NOT NULL,
    CONSTRAINT pk_perf_hourly PRIMARY KEY NONCLUSTERED
        (workspace_id, hour, computer, object_name, counter_name, instance_name)
)
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'cx_perf_hourly' AND object_id = OBJECT_ID(N'dbo.perf_hourly'))
CREATE CLUSTERED INDEX cx_perf_hourly ON dbo.perf_hourly (workspace_id, hour)
GO
IF OBJECT_ID(N'dbo.events_hourly', N'U') IS NULL
CREATE TABLE dbo.events_hourly (
    workspace_id varchar(36) NOT NULL,
    hour datetime2(0) NOT NULL,
    log_type varchar(100) COLLATE Latin1_General_100_BIN2 NOT NULL,
    computer nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    event_id int NOT NULL,
    level nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    events bigint NOT NULL,
    CONSTRAINT pk_events_hourly PRIMARY KEY NONCLUSTERED (workspace_id, hour, log_type, computer, event_id, level)
)
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'cx_events_hourly' AND object_id = OBJECT_ID(N'dbo.events_hourly'))
CREATE CLUSTERED INDEX cx_events_hourly ON dbo.events_hourly (workspace_id, hour)
GO
IF OBJECT_ID(N'dbo.syslog_hourly', N'U') IS NULL
CREATE TABLE dbo.syslog_hourly (
    workspace_id varchar(36) NOT NULL,
    hour datetime2(0) NOT NULL,
    computer nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    facility nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    severity nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    messages bigint NOT NULL,
    CONSTRAINT pk_syslog_hourly PRIMARY KEY NONCLUSTERED (workspace_id, hour, computer, facility, severity)
)
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'cx_syslog_hourly' AND object_id = OBJECT_ID(N'dbo.syslog_hourly'))
CREATE CLUSTERED INDEX cx_syslog_hourly ON dbo.syslog_hourly (workspace_id, hour)
