"""Sluice benchmarks, run with `python -m bench` (or `make bench`) from the repository root.

1. Ingest throughput: the real `ingest_http` handler against Azurite, in MB/s of JSON per CPU-second,
   beside "the floor" (the least work any ingest of the same bytes must do) measured in the same run.
2. Authentication cost per request, beside the bare cryptography it cannot avoid.
3. Processing throughput (`bench/processing.py`): records/s per core from a raw blob's bytes to
   committed aggregates on SQLite and PostgreSQL, beside the parse floor; set-based vs row-by-row
   upserts on PostgreSQL; peak memory while a 30 MB blob is processed.
4. Retention (`bench/retention.py`): purge time with the same days deleted and 10 vs 1,000 days kept,
   as a ratio (target about 1), beside the unbounded listing's.
5. Cold start: the import time of each function module in a fresh interpreter, beside a bare
   interpreter start, against the 300 ms target.

Figures are printed, never asserted: timing depends on the machine and what else runs on it.
"""
