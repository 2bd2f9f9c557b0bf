-- Row-level security keyed by workspace on every aggregate table, for reader sessions.
--
-- Who is filtered: every role but the tables' owner. The owner is the role that runs the migrations and
-- the processor (`sluice` in the tests); policies do not apply to a table's owner unless the table is
-- FORCEd, and they are deliberately not FORCEd, so processing and retention write and delete every
-- workspace's rows. Superusers and BYPASSRLS roles are exempt as always.
--
-- Readers: the NOLOGIN group role sluice_reader holds SELECT on the aggregate tables and nothing else
-- (no INSERT, UPDATE, DELETE; no ledger, no schema_migrations). A reader login is a member of it; the
-- service's reader session (shared.sql.ReaderSession) switches to it and sets sluice.workspace_id once
-- at session start. A session without the setting sees no row (current_setting(..., true) is NULL).
--
-- Threat model: the policies compare rows to a session setting, which any session may change with
-- set_config(). They protect against the service's own mistakes (a query that forgets or garbles its
-- WHERE clause, a join that reaches another workspace), not against a client that can run arbitrary SQL
-- on a reader connection: reader connections run only the service's fixed, parameterised statements.
-- Azure SQL's read-only SESSION_CONTEXT closes that gap there.
--
-- Creating a role needs CREATEROLE. Without it (the tests' `sluice` role), the role is expected to be
-- created by an administrator (CREATE ROLE sluice_reader NOLOGIN) before this migration runs, and this
-- migration only grants to it; if it does not exist, a warning is raised and the grant is left to the
-- administrator (GRANT SELECT ON usage_hourly, perf_hourly, events_hourly, syslog_hourly TO
-- sluice_reader). Until then a reader session fails to start: it never falls back to the owner.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_reader') THEN
        BEGIN
            CREATE ROLE sluice_reader NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database of the cluster
            WHEN insufficient_privilege THEN
                RAISE WARNING 'sluice: role sluice_reader does not exist and % cannot create it (%); '
                    'reader sessions fail until an administrator creates it and grants it SELECT on '
                    'the aggregate tables', current_user, SQLERRM;
        END;
    END IF;
END
$$
GO
ALTER TABLE usage_hourly ENABLE ROW LEVEL SECURITY
GO
DROP POLICY IF EXISTS workspace_isolation ON usage_hourly
GO
CREATE POLICY workspace_isolation ON usage_hourly
    USING (workspace_id = current_setting('sluice.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('sluice.workspace_id', true))
GO
ALTER TABLE perf_hourly ENABLE ROW LEVEL SECURITY
GO
DROP POLICY IF EXISTS workspace_isolation ON perf_hourly
GO
CREATE POLICY workspace_isolation ON perf_hourly
    USING (workspace_id = current_setting('sluice.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('sluice.workspace_id', true))
GO
ALTER TABLE events_hourly ENABLE ROW LEVEL SECURITY
GO
DROP POLICY IF EXISTS workspace_isolation ON events_hourly
GO
CREATE POLICY workspace_isolation ON events_hourly
    USING (workspace_id = current_setting('sluice.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('sluice.workspace_id', true))
GO
ALTER TABLE syslog_hourly ENABLE ROW LEVEL SECURITY
GO
DROP POLICY IF EXISTS workspace_isolation ON syslog_hourly
GO
CREATE POLICY workspace_isolation ON syslog_hourly
    USING (workspace_id = current_setting('sluice.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('sluice.workspace_id', true))
GO
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_reader') THEN
        GRANT SELECT ON usage_hourly, perf_hourly, events_hourly, syslog_hourly TO sluice_reader;
    END IF;
END
$$
