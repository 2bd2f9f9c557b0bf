CREATE TABLE IF NOT EXISTS perf_hourly (
    workspace_id varchar(36) NOT NULL,
    hour timestamp NOT NULL,
    computer varchar(256) NOT NULL,
    object_name varchar(256) NOT NULL,
    counter_name varchar(256) NOT NULL,
    instance_name varchar(256) NOT NULL,
    samples bigint NOT NULL,
    total double precision NOT NULL,
    minimum double precision NOT NULL,
    maximum double precision NOT NULL,
    PRIMARY KEY (workspace_id, hour, computer, object_name, counter_name, instance_name)
)
GO
CREATE TABLE IF NOT EXISTS events_hourly (
    workspace_id varchar(36) NOT NULL,
    hour timestamp NOT NULL,
    log_type varchar(100) NOT NULL,
    computer varchar(256) NOT NULL,
    event_id integer NOT NULL,
    level varchar(256) NOT NULL,
    events bigint NOT NULL,
    PRIMARY KEY (workspace_id, hour, log_type, computer, event_id, level)
)
GO
CREATE TABLE IF NOT EXISTS syslog_hourly (
    workspace_id varchar(36) NOT NULL,
    hour timestamp NOT NULL,
    computer varchar(256) NOT NULL,
    facility varchar(256) NOT NULL,
    severity varchar(256) NOT NULL,
    messages bigint NOT NULL,
    PRIMARY KEY (workspace_id, hour, computer, facility, severity)
)
