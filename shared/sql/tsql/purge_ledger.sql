-- params: batch_rows, workspace_id, before
-- `before` is a day prefix (raw/yyyy/MM/dd/): the names below it (BIN2) are those of earlier days.
WITH doomed AS (
    SELECT TOP (CAST(? AS int)) blob_name FROM dbo.processed_blobs
    WHERE workspace_id = CAST(? AS varchar(36)) AND blob_name < CAST(? AS varchar(256))
)
DELETE FROM doomed
