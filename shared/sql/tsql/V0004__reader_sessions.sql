-- The principal the query API's reader sessions run as (Azure SQL).
--
-- The app connects as its own identity, a member of sluice_processor, which the security policy exempts
-- (it writes and purges every workspace). A reader session therefore drops to this user for the rest of
-- its connection (bind_reader: EXECUTE AS USER ... WITH NO REVERT, after the read-only SESSION_CONTEXT):
-- a user without a login, member of sluice_reader only, so the policy filters everything the session
-- reads and nothing on that connection can switch back. sluice_processor may impersonate it and nobody
-- else is granted to.
IF DATABASE_PRINCIPAL_ID(N'sluice_reader_session') IS NULL CREATE USER sluice_reader_session WITHOUT LOGIN
GO
IF IS_ROLEMEMBER(N'sluice_reader', N'sluice_reader_session') = 0 ALTER ROLE sluice_reader ADD MEMBER sluice_reader_session
GO
GRANT IMPERSONATE ON USER::sluice_reader_session TO sluice_processor
