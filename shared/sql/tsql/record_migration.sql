-- params: version, name
INSERT INTO dbo.schema_migrations (version, name) VALUES (?, ?)
