"""Event Grid `Microsoft.Storage.BlobCreated` for `ws-*` containers → hourly aggregates in SQL.
An exception here (storage or database unavailable) makes Event Grid redeliver (then dead-letter);
redelivery is harmless. A blob that can never be processed is quarantined and acknowledged."""

import logging

import azure.functions as func

from shared.processing import parse_blob_created, process_blob_created
from shared.runtime import services
from shared.sql.retry import call_with_retries

log = logging.getLogger("sluice.process_blob")


def main(event: func.EventGridEvent) -> None:
    created = parse_blob_created(event.event_type, event.subject)
    if created is None:
        log.info("ignored event %s of type %s", event.id, event.event_type)
        return
    current = services()
    # Transient database failures are retried here a few times with backoff, then raised for Event
    # Grid to redeliver; a retry of a blob that had in fact committed finds its ledger row.
    call_with_retries(
        lambda: process_blob_created(
            created, raw_store=current.raw_store, sink=current.database, audit=current.audit
        )
    )
