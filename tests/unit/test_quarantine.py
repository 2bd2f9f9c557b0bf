"""Poison blobs with in-memory ports: each kind is moved to quarantine/ with its reason, audited and
acknowledged, never counted; transient failures are raised for redelivery, never quarantined."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pytest

from shared.aggregate import Aggregates
from shared.audit import AuditAction, AuditLog
from shared.errors import DatabaseError, DatabaseUnavailable, StorageUnavailable
from shared.processing import (
    PROCESSING_ACTOR,
    AggregateSink,
    BlobCreated,
    LedgerEntry,
    Outcome,
    process_blob_created,
)
from shared.rawstore import (
    QUARANTINE_DETAIL,
    QUARANTINE_DETAIL_MAX,
    QUARANTINE_REASON,
    QUARANTINED_AT,
    ascii_text,
    quarantine_name,
)
from tests.unit.fakes import MemoryAuditStore, MemoryRawStore, MemorySink

WS = "0c6d2a44-2a3f-4f3e-9c7e-1a2b3c4d5e6f"
OTHER_WS = "99999999-2a3f-4f3e-9c7e-1a2b3c4d5e6f"
NAME = "raw/2026/11/22/13/Syslog/" + "b" * 32 + ".json.gz"
NOW = datetime(2026, 11, 22, 13, 5, tzinfo=UTC)
GOOD = orjson.dumps([{"Computer": "a", "m": 1}, {"Computer": "b", "m": 2}])
GOOD_GZIP = gzip.compress(GOOD)


def metadata_for(data: bytes, **changes: str | None) -> dict[str, str]:
    """Ingest's metadata for the stored bytes `data`, with `changes` (None drops a key)."""
    metadata: dict[str, str | None] = {
        "workspace_id": WS,
        "sha256": hashlib.sha256(data).hexdigest(),
        "log_type": "Syslog",
        "record_count": "2",
    }
    metadata.update(changes)
    return {k: v for k, v in metadata.items() if v is not None}


def poison(data: bytes, reason: str, **changes: str | None) -> tuple[bytes, dict[str, str], str]:
    return data, metadata_for(data, **changes), reason


def bomb() -> bytes:
    return gzip.compress(b"[" + b" " * (31 * 1024 * 1024) + b"]", compresslevel=9)


# name -> (stored bytes, metadata, expected reason code)
POISON: dict[str, tuple[bytes, dict[str, str], str]] = {
    "corrupt gzip": poison(b"\x1f\x8b\x08\x00garbage", "InvalidDataFormat"),
    "truncated gzip": poison(GOOD_GZIP[:-12], "InvalidDataFormat"),
    "not gzip at all": poison(GOOD, "InvalidDataFormat"),
    "invalid JSON": poison(gzip.compress(b'[{"a": 1},'), "InvalidDataFormat"),
    "array of numbers": poison(gzip.compress(b"[1, 2, 3]"), "InvalidDataFormat"),
    "object and string": poison(gzip.compress(b'[{"a": 1}, "b"]'), "InvalidDataFormat"),
    "JSON string": poison(gzip.compress(b'"text"'), "InvalidDataFormat"),
    "sha256 mismatch": poison(GOOD_GZIP, "CorruptBlob", sha256="0" * 64),
    "no sha256": poison(GOOD_GZIP, "CorruptBlob", sha256=None),
    "sha256 not hex": poison(GOOD_GZIP, "CorruptBlob", sha256="not-a-digest"),
    "no workspace_id": poison(GOOD_GZIP, "CorruptBlob", workspace_id=None),
    "another workspace's id": poison(GOOD_GZIP, "CorruptBlob", workspace_id=OTHER_WS),
    "no metadata": (GOOD_GZIP, {}, "CorruptBlob"),
}


@dataclass
class Harness:
    store: MemoryRawStore = field(default_factory=MemoryRawStore)
    sink: AggregateSink = field(default_factory=MemorySink)
    audit_store: MemoryAuditStore = field(default_factory=MemoryAuditStore)

    def put(self, data: bytes, metadata: dict[str, str], name: str = NAME) -> None:
        self.store.put_raw(WS, name, data, metadata=metadata)

    def deliver(self, name: str = NAME) -> Outcome:
        return process_blob_created(
            BlobCreated(container=f"ws-{WS}", blob_name=name),
            raw_store=self.store,
            sink=self.sink,
            audit=AuditLog(self.audit_store, clock=lambda: NOW),
        )

    def quarantine_entries(self) -> list[dict[str, object]]:
        return [
            {"actor": e.actor, **e.details}
            for e in self.audit_store.read(WS).entries
            if e.action == AuditAction.QUARANTINE
        ]


@dataclass
class FlakySink:
    """A MemorySink whose next `failures` calls raise `error` (nothing committed), like a database
    that drops the connection mid-transaction."""

    inner: MemorySink = field(default_factory=MemorySink)
    failures: int = 1
    error: Exception = field(default_factory=lambda: DatabaseUnavailable("connection reset"))

    def apply_blob(self, entry: LedgerEntry, aggregates: Aggregates) -> bool:
        if self.failures:
            self.failures -= 1
            raise self.error
        return self.inner.apply_blob(entry, aggregates)


@pytest.mark.parametrize("kind", list(POISON))
def test_given_a_poison_blob_when_delivered_then_moved_to_quarantine_with_its_reason_audited_and_acknowledged(
    kind: str,
) -> None:
    data, metadata, reason = POISON[kind]
    harness = Harness()
    harness.put(data, metadata)

    outcome = harness.deliver()

    assert outcome is Outcome.QUARANTINED
    assert harness.store.names(WS) == [quarantine_name(NAME)]
    moved = harness.store.get_raw(WS, quarantine_name(NAME))
    assert moved.data == data
    assert moved.metadata[QUARANTINE_REASON] == reason
    assert moved.metadata[QUARANTINE_DETAIL].isascii() and moved.metadata[QUARANTINE_DETAIL]
    assert datetime.fromisoformat(moved.metadata[QUARANTINED_AT]).tzinfo is not None
    assert {k: moved.metadata[k] for k in metadata} == metadata  # the original metadata is kept
    assert isinstance(harness.sink, MemorySink)
    assert harness.sink.ledger == {} and harness.sink.aggregates == []
    assert harness.quarantine_entries() == [
        {"actor": PROCESSING_ACTOR, "blob": NAME, "reason": reason, "quarantined_as": quarantine_name(NAME)}
    ]


def test_given_a_blob_inflating_past_the_limit_when_delivered_then_quarantined_as_too_large() -> None:
    harness = Harness()
    data = bomb()
    harness.put(data, metadata_for(data))

    assert harness.deliver() is Outcome.QUARANTINED

    moved = harness.store.get_raw(WS, quarantine_name(NAME))
    assert moved.metadata[QUARANTINE_REASON] == "RequestEntityTooLarge"
    assert harness.quarantine_entries()[0]["reason"] == "RequestEntityTooLarge"


def test_given_a_quarantined_blob_when_its_event_is_redelivered_then_missing_and_nothing_more() -> None:
    harness = Harness()
    harness.put(*POISON["corrupt gzip"][:2])
    assert harness.deliver() is Outcome.QUARANTINED

    assert harness.deliver() is Outcome.MISSING

    assert harness.store.names(WS) == [quarantine_name(NAME)]
    assert len(harness.quarantine_entries()) == 1


def test_given_the_quarantine_copy_s_own_blob_created_event_when_delivered_then_ignored() -> None:
    harness = Harness()
    harness.put(*POISON["invalid JSON"][:2])
    assert harness.deliver() is Outcome.QUARANTINED

    assert harness.deliver(quarantine_name(NAME)) is Outcome.IGNORED

    assert harness.store.names(WS) == [quarantine_name(NAME)]
    assert len(harness.quarantine_entries()) == 1


def test_given_the_database_unavailable_once_when_delivered_then_raised_and_redelivery_counts_once() -> None:
    sink = FlakySink()
    harness = Harness(sink=sink)
    harness.put(GOOD_GZIP, metadata_for(GOOD_GZIP))

    with pytest.raises(DatabaseUnavailable):
        harness.deliver()

    assert harness.store.names(WS) == [NAME]  # left for Event Grid's redelivery
    assert sink.inner.ledger == {}
    assert harness.quarantine_entries() == []

    assert harness.deliver() is Outcome.APPLIED
    assert harness.deliver() is Outcome.DUPLICATE
    assert sorted((r.computer, r.records) for r in sink.inner.usage) == [("a", 1), ("b", 1)]
    assert sink.inner.ledger[(WS, NAME)].record_count == 2
    assert harness.store.names(WS) == [NAME]


def test_given_a_database_refusal_when_delivered_then_raised_and_the_blob_stays_in_raw() -> None:
    # Not the blob's fault: the event pipeline retries, then dead-letters; the blob is not moved.
    harness = Harness(sink=FlakySink(error=DatabaseError("value too long")))
    harness.put(GOOD_GZIP, metadata_for(GOOD_GZIP))

    with pytest.raises(DatabaseError):
        harness.deliver()

    assert harness.store.names(WS) == [NAME]
    assert harness.quarantine_entries() == []


def test_given_storage_failing_during_the_move_when_delivered_then_raised_and_redelivery_moves_it() -> None:
    harness = Harness()
    harness.put(*POISON["sha256 mismatch"][:2])
    harness.store.quarantine_error = StorageUnavailable("storage is unreachable")

    with pytest.raises(StorageUnavailable):
        harness.deliver()

    assert harness.store.names(WS) == [NAME]
    assert harness.deliver() is Outcome.QUARANTINED
    assert harness.store.names(WS) == [quarantine_name(NAME)]
    # The entry is written before the move, so an interrupted move is audited too (twice, not never).
    assert [e["reason"] for e in harness.quarantine_entries()] == ["CorruptBlob", "CorruptBlob"]


def test_given_an_already_moved_blob_when_quarantined_again_then_it_succeeds() -> None:
    store = MemoryRawStore()
    store.put_raw(WS, NAME, b"x", metadata={})
    store.quarantine_raw(WS, NAME, reason="CorruptBlob", detail="d")

    store.quarantine_raw(WS, NAME, reason="CorruptBlob", detail="d")

    assert store.names(WS) == [quarantine_name(NAME)]


def test_given_a_quarantined_blob_then_its_day_counts_for_retention_and_goes_with_it() -> None:
    harness = Harness()
    harness.put(*POISON["corrupt gzip"][:2])
    harness.deliver()

    (day,) = harness.store.list_raw_days(WS)
    assert harness.store.delete_raw_day(WS, day).blobs == 1
    assert harness.store.names(WS) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The blob's gzip body is corrupt.", "The blob's gzip body is corrupt."),
        ("caf\u00e9\nline", "caf??line"),
        ("  padded  ", "padded"),
        ("x" * 300, "x" * (QUARANTINE_DETAIL_MAX - 3) + "..."),
    ],
)
def test_given_any_message_when_made_a_detail_then_printable_ascii_and_short(
    text: str, expected: str
) -> None:
    assert ascii_text(text, limit=QUARANTINE_DETAIL_MAX) == expected
