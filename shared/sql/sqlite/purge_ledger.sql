-- params: workspace_id, workspace_id, before, batch_rows
-- `before` is a day prefix (raw/yyyy/MM/dd/): the names below it are those of earlier days.
DELETE FROM processed_blobs
WHERE workspace_id = ? AND rowid IN (
    SELECT rowid FROM processed_blobs WHERE workspace_id = ? AND blob_name < ? LIMIT ?
)
