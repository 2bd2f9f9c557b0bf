-- One migrator at a time across instances; released at commit.
SELECT pg_advisory_xact_lock(7305714001)
