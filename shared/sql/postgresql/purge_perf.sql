-- params: workspace_id, workspace_id, before, batch_rows
-- A batch by row address (ctid): a TID scan of at most batch_rows rows.
DELETE FROM perf_hourly
WHERE workspace_id = CAST(? AS varchar) AND ctid = ANY (ARRAY(
    SELECT ctid FROM perf_hourly
    WHERE workspace_id = CAST(? AS varchar) AND hour < CAST(? AS timestamp)
    LIMIT CAST(? AS integer)
))
