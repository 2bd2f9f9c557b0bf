"""BlobCreated → hourly aggregates in SQL, exactly once in effect on top of at-least-once delivery:
the ledger row for the blob is written in the same transaction as the aggregate upserts."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from shared.aggregate import Aggregates, HourlyAggregator
from shared.errors import BlobNotFound
from shared.ids import RawBlobName, workspace_of_container
from shared.rawreader import RecordStream
from shared.rawstore import MAX_BODY_BYTES, RawStore
from shared.telemetry import workspace_log

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
_SUBJECT_PREFIX = "/blobServices/default/containers/"

log = logging.getLogger("sluice.processing")


@dataclass(frozen=True, slots=True)
class BlobCreated:
    container: str
    blob_name: str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    workspace_id: str
    blob_name: str
    etag: str
    sha256: str
    record_count: int


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already in the ledger: a redelivery, nothing counted again
    IGNORED = "ignored"  # not a raw blob of a workspace container
    MISSING = "missing"  # the blob is gone (deleted by retention before processing)


class AggregateSink(Protocol):
    def apply_blob(self, entry: LedgerEntry, aggregates: Aggregates) -> bool:
        """Ledger row + upserts in one transaction; False when the ledger already had the blob."""


def parse_blob_created(event_type: str, subject: str) -> BlobCreated | None:
    """`/blobServices/default/containers/{container}/blobs/{name}` of a BlobCreated event."""
    if event_type != BLOB_CREATED or not subject.startswith(_SUBJECT_PREFIX):
        return None
    container, sep, name = subject[len(_SUBJECT_PREFIX) :].partition("/blobs/")
    return BlobCreated(container=container, blob_name=name) if sep and name else None


def process_blob_created(event: BlobCreated, *, raw_store: RawStore, sink: AggregateSink) -> Outcome:
    workspace_id = workspace_of_container(event.container)
    name = RawBlobName.parse(event.blob_name)
    if workspace_id is None or name is None:
        log.info("ignored blob %s/%s: not a workspace raw blob", event.container, event.blob_name)
        return Outcome.IGNORED
    wlog = workspace_log(log, workspace_id)
    try:
        blob = raw_store.get_raw(workspace_id, event.blob_name)
    except BlobNotFound:
        wlog.warning("blob %s is gone; nothing to process", event.blob_name)
        return Outcome.MISSING
    if blob.metadata.get("workspace_id") != workspace_id:
        wlog.error("blob %s carries another workspace's metadata; ignored", event.blob_name)
        return Outcome.IGNORED
    stream = RecordStream(blob.data, max_bytes=MAX_BODY_BYTES)
    aggregator = HourlyAggregator(
        log_type=name.log_type,
        time_field=blob.metadata.get("time_generated_field"),
        received_at=_received_at(blob.metadata, default=name.hour),
    )
    for records in stream:
        aggregator.add(records)
    entry = LedgerEntry(
        workspace_id=workspace_id,
        blob_name=event.blob_name,
        etag=blob.etag,
        sha256=stream.finish(blob.metadata.get("sha256")),  # before anything is committed
        record_count=stream.records,
    )
    if sink.apply_blob(entry, aggregator.result()):
        wlog.info("aggregated %d records from %s", stream.records, event.blob_name)
        return Outcome.APPLIED
    wlog.info("blob %s was already processed; redelivery ignored", event.blob_name)
    return Outcome.DUPLICATE


def _received_at(metadata: Mapping[str, str], *, default: datetime) -> datetime:
    try:
        moment = datetime.fromisoformat(metadata["received_at"])
    except (KeyError, ValueError):
        return default
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
