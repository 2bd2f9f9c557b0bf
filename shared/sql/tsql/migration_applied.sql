-- params: version
SELECT 1 FROM dbo.schema_migrations WHERE version = ?
