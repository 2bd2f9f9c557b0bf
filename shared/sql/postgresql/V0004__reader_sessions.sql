-- Reader sessions of the processor's own login, bound to a workspace that the reader role cannot forge.
--
-- The query API's reader sessions connect as the processor (the tables' owner), call
-- sluice_bind_reader(workspace) and so SET ROLE sluice_reader: from then on the policies apply. The
-- binding is two session settings, the workspace and its proof, a MAC of the workspace under a key only
-- the owner can read. The policies accept a row only when the proof matches (sluice_bound_workspace,
-- SECURITY DEFINER, evaluated once per statement as an InitPlan). So a statement that re-points
-- sluice.workspace_id on a reader connection sees no row at all: sluice_reader may read neither the key
-- nor call the functions that use it.
--
-- Left to PostgreSQL: a session can always RESET ROLE to its login. Reader connections run only the
-- service's fixed statements; Azure SQL's EXECUTE AS ... WITH NO REVERT closes that gap there.
--
-- The login must be a member of sluice_reader to SET ROLE to it. It is granted here when the login may
-- (it created the role, or has CREATEROLE); otherwise an administrator runs GRANT sluice_reader TO
-- <login> and reader sessions fail until then (they never fall back to the owner).
CREATE TABLE IF NOT EXISTS reader_binding_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key bytea NOT NULL
)
GO
-- 244 bits from the server's strong random source (gen_random_uuid, built in since PostgreSQL 13).
INSERT INTO reader_binding_key (key)
SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
ON CONFLICT (singleton) DO NOTHING
GO
REVOKE ALL ON reader_binding_key FROM PUBLIC
GO
-- sha256(k || sha256(k || m)): a MAC from the built-in sha256 (pgcrypto's hmac is an extension).
CREATE OR REPLACE FUNCTION sluice_workspace_proof(workspace text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(key || sha256(key || convert_to(workspace, 'UTF8'))), 'hex') FROM reader_binding_key
$$
GO
REVOKE EXECUTE ON FUNCTION sluice_workspace_proof(text) FROM PUBLIC
GO
CREATE OR REPLACE FUNCTION sluice_bound_workspace() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT bound.workspace
    FROM (SELECT current_setting('sluice.workspace_id', true) AS workspace) AS bound
    WHERE sluice_workspace_proof(bound.workspace) = current_setting('sluice.workspace_proof', true)
$$
GO
-- A pinned search path, the session's temporary schema last: unless it is named, pg_temp is searched
-- first, and a temporary table called reader_binding_key (any role may create one) would stand in for
-- the real key.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION sluice_workspace_proof(text) SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION sluice_bound_workspace() SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
END
$$
GO
CREATE OR REPLACE FUNCTION sluice_bind_reader(workspace text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('sluice.workspace_id', workspace, false);
    PERFORM set_config('sluice.workspace_proof', sluice_workspace_proof(workspace), false);
    PERFORM set_config('role', 'sluice_reader', false);  -- last: the proof needs the owner's rights
    RETURN workspace;
END
$$
GO
REVOKE EXECUTE ON FUNCTION sluice_bind_reader(text) FROM PUBLIC
GO
DROP POLICY IF EXISTS workspace_isolation ON usage_hourly
GO
CREATE POLICY workspace_isolation ON usage_hourly
    USING (workspace_id = (SELECT sluice_bound_workspace()))
    WITH CHECK (workspace_id = (SELECT sluice_bound_workspace()))
GO
DROP POLICY IF EXISTS workspace_isolation ON perf_hourly
GO
CREATE POLICY workspace_isolation ON perf_hourly
    USING (workspace_id = (SELECT sluice_bound_workspace()))
    WITH CHECK (workspace_id = (SELECT sluice_bound_workspace()))
GO
DROP POLICY IF EXISTS workspace_isolation ON events_hourly
GO
CREATE POLICY workspace_isolation ON events_hourly
    USING (workspace_id = (SELECT sluice_bound_workspace()))
    WITH CHECK (workspace_id = (SELECT sluice_bound_workspace()))
GO
DROP POLICY IF EXISTS workspace_isolation ON syslog_hourly
GO
CREATE POLICY workspace_isolation ON syslog_hourly
    USING (workspace_id = (SELECT sluice_bound_workspace()))
    WITH CHECK (workspace_id = (SELECT sluice_bound_workspace()))
GO
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_reader')
            AND NOT pg_has_role(current_user, 'sluice_reader', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT sluice_reader TO %I', current_user);
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE WARNING 'sluice: % is not a member of sluice_reader and cannot grant it (%); the '
                    'query API fails until an administrator runs GRANT sluice_reader TO %',
                    current_user, SQLERRM, current_user;
        END;
    END IF;
END
$$
