"""BlobCreated → aggregates with in-memory ports: idempotent, scoped by the container's workspace."""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime

import orjson
import pytest

from shared.aggregate import UsageRow
from shared.audit import AuditLog
from shared.processing import AggregateSink, BlobCreated, Outcome, parse_blob_created, process_blob_created
from shared.rawstore import RawStore, quarantine_name
from tests.support.aggregates import aggregate
from tests.unit.fakes import MemoryAuditStore, MemoryRawStore, MemorySink

WS = "0c6d2a44-2a3f-4f3e-9c7e-1a2b3c4d5e6f"
OTHER_WS = "99999999-2a3f-4f3e-9c7e-1a2b3c4d5e6f"
NAME = "raw/2026/11/22/13/Syslog/" + "a" * 32 + ".json.gz"
HOUR = datetime(2026, 11, 22, 13, tzinfo=UTC)
RECORDS = [{"Computer": "a", "m": 1}, {"Computer": "b", "m": 22}, {"Computer": "a", "m": 333}, {"m": 4}]


def volume(records: list[dict[str, object]], *, hour: datetime, log_type: str) -> list[UsageRow]:
    return aggregate(records, log_type=log_type, received_at=hour).usage


def store_with(records: object, *, workspace: str = WS, metadata_workspace: str = WS) -> MemoryRawStore:
    stored = gzip.compress(orjson.dumps(records))
    store = MemoryRawStore()
    metadata = {"workspace_id": metadata_workspace, "sha256": hashlib.sha256(stored).hexdigest()}
    store.put_raw(workspace, NAME, stored, metadata=metadata)
    return store


def event(container: str = f"ws-{WS}", name: str = NAME) -> BlobCreated:
    return BlobCreated(container=container, blob_name=name)


def process(
    created: BlobCreated, *, raw_store: RawStore, sink: AggregateSink, audit: MemoryAuditStore | None = None
) -> Outcome:
    log = AuditLog(audit if audit is not None else MemoryAuditStore(), clock=lambda: HOUR)
    return process_blob_created(created, raw_store=raw_store, sink=sink, audit=log)


def test_given_subject_when_parsing_then_container_and_name() -> None:
    subject = f"/blobServices/default/containers/ws-{WS}/blobs/{NAME}"
    assert parse_blob_created("Microsoft.Storage.BlobCreated", subject) == event()
    assert parse_blob_created("Microsoft.Storage.BlobDeleted", subject) is None
    assert parse_blob_created("Microsoft.Storage.BlobCreated", "/other") is None


def test_given_new_blob_when_processing_then_volume_per_computer() -> None:
    sink = MemorySink()

    outcome = process(event(), raw_store=store_with(RECORDS), sink=sink)

    assert outcome is Outcome.APPLIED
    sizes = [len(orjson.dumps(r)) for r in RECORDS]
    assert sink.usage == [
        UsageRow(HOUR, "Syslog", "", 1, sizes[3]),
        UsageRow(HOUR, "Syslog", "a", 2, sizes[0] + sizes[2]),
        UsageRow(HOUR, "Syslog", "b", 1, sizes[1]),
    ]
    assert sink.ledger[(WS, NAME)].record_count == 4


def test_given_same_event_three_times_when_processing_then_counted_once() -> None:
    sink, store = MemorySink(), store_with(RECORDS)
    outcomes = [process(event(), raw_store=store, sink=sink) for _ in range(3)]
    assert outcomes == [Outcome.APPLIED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert sum(row.records for row in sink.usage) == 4


@pytest.mark.parametrize(
    "created",
    [
        event(container="logs"),
        event(container=f"ws-{WS.upper()}"),
        event(name="raw/../../x.json.gz"),
        event(name="other/2026/11/22/13/Syslog/" + "a" * 32 + ".json.gz"),
    ],
)
def test_given_blob_outside_workspace_layout_when_processing_then_ignored(created: BlobCreated) -> None:
    sink = MemorySink()
    assert process(created, raw_store=store_with(RECORDS), sink=sink) is Outcome.IGNORED
    assert sink.ledger == {}


def test_given_metadata_of_other_workspace_when_processing_then_quarantined_and_nothing_counted() -> None:
    sink = MemorySink()
    store = store_with(RECORDS, metadata_workspace=OTHER_WS)
    assert process(event(), raw_store=store, sink=sink) is Outcome.QUARANTINED
    assert sink.usage == []
    assert store.names(WS) == [quarantine_name(NAME)]


def test_given_deleted_blob_when_processing_then_missing() -> None:
    assert process(event(), raw_store=MemoryRawStore(), sink=MemorySink()) is Outcome.MISSING


def test_given_content_not_matching_sha_when_processing_then_quarantined_and_nothing_counted() -> None:
    store, sink = store_with(RECORDS), MemorySink()
    blob = store.blobs[(WS, NAME)]
    store.blobs[(WS, NAME)] = type(blob)(data=gzip.compress(b"[{}]"), metadata=blob.metadata, etag=blob.etag)
    assert process(event(), raw_store=store, sink=sink) is Outcome.QUARANTINED
    assert sink.ledger == {}


def test_given_odd_computer_values_when_aggregating_then_text_and_bounded() -> None:
    rows = volume([{"Computer": 7}, {"Computer": "x" * 300}, {"Computer": None}], hour=HOUR, log_type="T")
    assert sorted(r.computer for r in rows) == ["", "7", "x" * 256]


@pytest.mark.parametrize(
    ("computer", "key"),
    [
        ("a\u0000b", "ab"),  # PostgreSQL refuses NUL in text
        ("web-1  ", "web-1"),  # SQL Server ignores trailing blanks when comparing
        ("\x1b[31mred", "[31mred"),
        ("\U0001f600" * 200, "\U0001f600" * 128),  # 256 UTF-16 code units, the T-SQL column's width
    ],
)
def test_given_computer_names_databases_compare_differently_when_aggregating_then_one_portable_key(
    computer: str, key: str
) -> None:
    (row,) = volume([{"Computer": computer}], hour=HOUR, log_type="T")
    assert row.computer == key
