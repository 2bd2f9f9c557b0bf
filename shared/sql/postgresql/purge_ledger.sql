-- params: workspace_id, workspace_id, before, batch_rows
-- `before` is a day prefix (raw/yyyy/MM/dd/): the names below it are those of earlier days, in any
-- collation, since every name agrees with it character by character up to the day's digits.
DELETE FROM processed_blobs
WHERE workspace_id = CAST(? AS varchar) AND ctid = ANY (ARRAY(
    SELECT ctid FROM processed_blobs
    WHERE workspace_id = CAST(? AS varchar) AND blob_name < CAST(? AS varchar)
    LIMIT CAST(? AS integer)
))
