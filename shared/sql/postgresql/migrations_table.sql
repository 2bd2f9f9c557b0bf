CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name varchar(200) NOT NULL,
    applied_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
)
