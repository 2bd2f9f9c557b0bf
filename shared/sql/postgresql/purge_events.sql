-- params: workspace_id, workspace_id, before, batch_rows
-- A batch by row address (ctid): a TID scan of at most batch_rows rows.
DELETE FROM events_hourly
WHERE workspace_id = CAST(? AS varchar) AND ctid = ANY (ARRAY(
    SELECT ctid FROM events_hourly
    WHERE workspace_id = CAST(? AS varchar) AND hour < CAST(? AS timestamp)
    LIMIT CAST(? AS integer)
))
