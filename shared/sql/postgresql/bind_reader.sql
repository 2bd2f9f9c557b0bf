-- params: workspace_id
-- Run once per reader connection, committed, before any query: SET ROLE sluice_reader (set_config of
-- `role` is SET ROLE; it fails unless the login is a member, so a reader session never runs as the
-- owner, to whom the policies do not apply) and the workspace the policies compare rows to.
SELECT set_config('role', 'sluice_reader', false), set_config('sluice.workspace_id', CAST(? AS text), false)
