"""Sluice's logic: a pure core (parsing, auth, aggregation, retention rules) and the I/O adapters
(blob, table, SQL, secrets) that the function folders pass in at the edge."""
