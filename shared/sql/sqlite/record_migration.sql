-- params: version, name
INSERT INTO schema_migrations (version, name) VALUES (?, ?)
