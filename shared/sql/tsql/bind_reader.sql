-- params: workspace_id
-- Run once per reader connection before any query. @read_only = 1: nothing on this connection can
-- change the workspace afterwards, not even a statement the service did not mean to run.
EXEC sp_set_session_context @key = N'workspace_id', @value = ?, @read_only = 1
