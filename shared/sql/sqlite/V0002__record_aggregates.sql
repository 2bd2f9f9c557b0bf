CREATE TABLE IF NOT EXISTS perf_hourly (
    workspace_id TEXT NOT NULL,
    hour TEXT NOT NULL,
    computer TEXT NOT NULL,
    object_name TEXT NOT NULL,
    counter_name TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    samples INTEGER NOT NULL,
    total REAL NOT NULL,
    minimum REAL NOT NULL,
    maximum REAL NOT NULL,
    PRIMARY KEY (workspace_id, hour, computer, object_name, counter_name, instance_name)
)
GO
CREATE TABLE IF NOT EXISTS events_hourly (
    workspace_id TEXT NOT NULL,
    hour TEXT NOT NULL,
    log_type TEXT NOT NULL,
    computer TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    level TEXT NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, hour, log_type, computer, event_id, level)
)
GO
CREATE TABLE IF NOT EXISTS syslog_hourly (
    workspace_id TEXT NOT NULL,
    hour TEXT NOT NULL,
    computer TEXT NOT NULL,
    facility TEXT NOT NULL,
    severity TEXT NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, hour, computer, facility, severity)
)
