"""The Sluice agent: the client side that runs on customer machines and never loses a batch.

    enrollment  key pair, self-signed certificate, registration with the enrollment key (agent.json)
    batching    lines and JSON into records, records into JSON-array batches (pure)
    spool       batches on disk, fsync'ed before they count as taken, capped, oldest dropped first
    sender      posts batches oldest first until 2xx, retry schedule, Retry-After (pure decisions)
    auth        client assertion (default), TLS client certificate, or SharedKey
    transport   HTTPS (http.client); any Transport can be passed instead
    tail        follows a file across rotation from a durable checkpoint
    agent       all of it with real I/O: take, deliver, follow
    config      the agent's own settings and state dir (apart from the service's shared.settings)
    durable     crash-safe file writes: temporary file, fsync, rename, directory fsync
    errors      what the agent reports to its user

The commands are `sluice agent enroll | send | tail | flush | status` (shared.cli.agents)."""
