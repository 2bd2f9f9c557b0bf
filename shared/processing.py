"""BlobCreated → hourly aggregates in SQL, exactly once in effect on top of at-least-once delivery:
the ledger row for the blob is written in the same transaction as the aggregate upserts.

A blob that can never be processed (a poison blob: corrupt or truncated gzip, not JSON, elements that
are not objects, inflating past the limit, stored bytes not matching their sha256, metadata missing or not
this workspace's) is moved to `quarantine/{name}` in its own container with the reason in its
metadata, audited, and acknowledged (Outcome.QUARANTINED), so Event Grid does not redeliver it for a
day. A transient failure (storage or database unavailable) is raised, so Event Grid redelivers.

The audit entry is written before the move: a failure between the two leaves an entry for a blob
still in `raw/`, which the redelivery moves (and audits again); never a move without its entry."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from shared.aggregate import Aggregates, HourlyAggregator
from shared.errors import BlobNotFound, CorruptBlob, RequestRejected, SluiceError
from shared.ids import RawBlobName, workspace_of_container
from shared.rawreader import RecordStream
from shared.rawstore import MAX_BODY_BYTES, RawBlob, RawStore, quarantine_name
from shared.telemetry import workspace_log

if TYPE_CHECKING:
    from shared.audit import AuditLog

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
_SUBJECT_PREFIX = "/blobServices/default/containers/"

PROCESSING_ACTOR = "system:processing"
_SHA256 = re.compile(r"[0-9a-f]{64}")

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
    MISSING = "missing"  # the blob is gone (deleted by retention before processing, or quarantined)
    QUARANTINED = "quarantined"  # a poison blob: moved to quarantine/, audited, acknowledged


class AggregateSink(Protocol):
    def apply_blob(self, entry: LedgerEntry, aggregates: Aggregates) -> bool:
        """Ledger row + upserts in one transaction; False when the ledger already had the blob."""


def parse_blob_created(event_type: str, subject: str) -> BlobCreated | None:
    """`/blobServices/default/containers/{container}/blobs/{name}` of a BlobCreated event."""
    if event_type != BLOB_CREATED or not subject.startswith(_SUBJECT_PREFIX):
        return None
    container, sep, name = subject[len(_SUBJECT_PREFIX) :].partition("/blobs/")
    return BlobCreated(container=container, blob_name=name) if sep and name else None


def process_blob_created(
    event: BlobCreated, *, raw_store: RawStore, sink: AggregateSink, audit: AuditLog
) -> Outcome:
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
    try:
        entry, aggregates = _read(blob, workspace_id=workspace_id, name=name, blob_name=event.blob_name)
    except (RequestRejected, CorruptBlob) as poison:
        return _quarantine(poison, workspace_id, event.blob_name, raw_store=raw_store, audit=audit)
    if sink.apply_blob(entry, aggregates):
        wlog.info("aggregated %d records from %s", entry.record_count, event.blob_name)
        return Outcome.APPLIED
    wlog.info("blob %s was already processed; redelivery ignored", event.blob_name)
    return Outcome.DUPLICATE


def _read(
    blob: RawBlob, *, workspace_id: str, name: RawBlobName, blob_name: str
) -> tuple[LedgerEntry, Aggregates]:
    """The blob's ledger entry and aggregates; InvalidDataFormat, PayloadTooLarge or CorruptBlob when it
    can never be processed. Nothing is committed here."""
    claimed = blob.metadata.get("workspace_id")
    if claimed != workspace_id:
        what = "no workspace_id" if claimed is None else "another workspace's id"
        raise CorruptBlob(f"The blob's metadata carries {what}.")
    expected_sha256 = blob.metadata.get("sha256")
    if expected_sha256 is None or not _SHA256.fullmatch(expected_sha256):
        raise CorruptBlob("The blob's metadata carries no valid sha256.")
    sha256 = hashlib.sha256(blob.data).hexdigest()  # of the stored gzip bytes, before they are read
    if sha256 != expected_sha256:
        raise CorruptBlob(f"The blob's sha256 {sha256} is not the {expected_sha256} of its metadata.")
    aggregator = HourlyAggregator(
        log_type=name.log_type,
        time_field=blob.metadata.get("time_generated_field"),
        received_at=_received_at(blob.metadata, default=name.hour),
    )
    stream = RecordStream(blob.data, record_type=aggregator.record_type, max_bytes=MAX_BODY_BYTES)
    for window in stream:
        aggregator.add(window)
    entry = LedgerEntry(
        workspace_id=workspace_id,
        blob_name=blob_name,
        etag=blob.etag,
        sha256=sha256,
        record_count=stream.records,
    )
    return entry, aggregator.result()


def _quarantine(
    poison: SluiceError, workspace_id: str, blob_name: str, *, raw_store: RawStore, audit: AuditLog
) -> Outcome:
    from shared.audit import AuditAction  # the rare path: kept out of the function's cold start

    wlog = workspace_log(log, workspace_id)
    target = quarantine_name(blob_name)
    audit.record(
        workspace_id,
        PROCESSING_ACTOR,
        AuditAction.QUARANTINE,
        blob=blob_name,
        reason=poison.code,
        quarantined_as=target,
    )
    try:
        raw_store.quarantine_raw(workspace_id, blob_name, reason=poison.code, detail=poison.message)
    except BlobNotFound:
        wlog.warning("poison blob %s (%s) is gone; nothing to quarantine", blob_name, poison.code)
        return Outcome.MISSING
    wlog.error("blob %s can never be processed (%s: %s); moved to %s", blob_name, poison.code, poison, target)
    return Outcome.QUARANTINED


def _received_at(metadata: Mapping[str, str], *, default: datetime) -> datetime:
    try:
        moment = datetime.fromisoformat(metadata["received_at"])
    except (KeyError, ValueError):
        return default
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
