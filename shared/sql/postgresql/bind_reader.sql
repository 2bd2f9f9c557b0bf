-- params: workspace_id
-- Run once per reader connection, committed, before any query (V0004): the workspace and its proof,
-- then SET ROLE sluice_reader, to which the policies apply. Refused unless the login is a member of
-- sluice_reader, so a reader session never runs as the owner.
SELECT sluice_bind_reader(CAST(? AS text))
