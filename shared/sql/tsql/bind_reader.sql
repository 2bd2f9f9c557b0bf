-- params: workspace_id
-- Run once per reader connection before any query, as two batches. First the workspace, with
-- @read_only = 1: nothing on this connection can change it afterwards.
EXEC sp_set_session_context @key = N'workspace_id', @value = ?, @read_only = 1
GO
-- Then drop to the reader user (V0004) until the connection closes: the app's own identity is a member
-- of sluice_processor, which the policy exempts. A batch of its own without parameters, sent ad hoc:
-- the driver runs a parameterised batch through sp_executesql, where an EXECUTE AS ends with the call
-- and WITH NO REVERT is refused. (A pooled connection that ran this is dropped at reset, error 18059.)
EXECUTE AS USER = N'sluice_reader_session' WITH NO REVERT
