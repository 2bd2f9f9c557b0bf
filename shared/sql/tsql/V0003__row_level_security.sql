-- Row-level security keyed by workspace on every aggregate table (Azure SQL).
--
-- Readers: members of the database role sluice_reader, which holds SELECT on the aggregate tables and
-- nothing else. The service's reader session (shared.sql.ReaderSession) sets SESSION_CONTEXT
-- N'workspace_id' with @read_only = 1 as the first statement on its connection, so nothing run on that
-- connection afterwards - not even a statement the service did not mean to run - can point it at
-- another workspace. Without the setting the predicate is false and a reader sees no row.
--
-- Exempt: members of sluice_processor (the processor's identity: ALTER ROLE sluice_processor ADD MEMBER
-- [its managed identity]), which write and purge every workspace's rows, and db_owner (the principal
-- that runs these migrations, which could switch the policy off anyway). The exemption is tied to the
-- database principal, checked with IS_ROLEMEMBER: a session cannot claim it. A SESSION_CONTEXT flag
-- (N'processor' = 1) was rejected: any session that reaches sp_set_session_context first can set it.
--
-- Filter predicates hide other workspaces' rows from SELECT, UPDATE and DELETE; block predicates refuse
-- inserting a row for another workspace or moving a row to one.
IF DATABASE_PRINCIPAL_ID(N'sluice_reader') IS NULL CREATE ROLE sluice_reader
GO
IF DATABASE_PRINCIPAL_ID(N'sluice_processor') IS NULL CREATE ROLE sluice_processor
GO
GRANT SELECT ON dbo.usage_hourly TO sluice_reader
GO
GRANT SELECT ON dbo.perf_hourly TO sluice_reader
GO
GRANT SELECT ON dbo.events_hourly TO sluice_reader
GO
GRANT SELECT ON dbo.syslog_hourly TO sluice_reader
GO
GRANT SELECT, INSERT, UPDATE, DELETE ON dbo.usage_hourly TO sluice_processor
GO
GRANT SELECT, INSERT, UPDATE, DELETE ON dbo.perf_hourly TO sluice_processor
GO
GRANT SELECT, INSERT, UPDATE, DELETE ON dbo.events_hourly TO sluice_processor
GO
GRANT SELECT, INSERT, UPDATE, DELETE ON dbo.syslog_hourly TO sluice_processor
GO
GRANT SELECT, INSERT, DELETE ON dbo.processed_blobs TO sluice_processor
GO
-- Idempotent: the policy is dropped and created again in this migration's transaction (the function
-- cannot be altered while the schema-bound policy refers to it).
IF OBJECT_ID(N'dbo.workspace_isolation', N'SP') IS NOT NULL DROP SECURITY POLICY dbo.workspace_isolation
GO
CREATE OR ALTER FUNCTION dbo.fn_workspace_predicate(@workspace_id varchar(36))
RETURNS TABLE
WITH SCHEMABINDING
AS
RETURN
    SELECT 1 AS allowed
    WHERE @workspace_id = CAST(SESSION_CONTEXT(N'workspace_id') AS varchar(36))
       OR IS_ROLEMEMBER(N'sluice_processor') = 1
       OR IS_ROLEMEMBER(N'db_owner') = 1
GO
CREATE SECURITY POLICY dbo.workspace_isolation
    ADD FILTER PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.usage_hourly,
    ADD BLOCK PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.usage_hourly AFTER INSERT,
    ADD BLOCK PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.usage_hourly AFTER UPDATE,
    ADD FILTER PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.perf_hourly,
    ADD BLOCK PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.perf_hourly AFTER INSERT,
    ADD BLOCK PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.perf_hourly AFTER UPDATE,
    ADD FILTER PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.events_hourly,
    ADD BLOCK PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.events_hourly AFTER INSERT,
    ADD BLOCK PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.events_hourly AFTER UPDATE,
    ADD FILTER PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.syslog_hourly,
    ADD BLOCK PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.syslog_hourly AFTER INSERT,
    ADD BLOCK PREDICATE dbo.fn_workspace_predicate(workspace_id) ON dbo.syslog_hourly AFTER UPDATE
WITH (STATE = ON, SCHEMABINDING = ON)
