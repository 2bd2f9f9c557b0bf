"""Poison blobs through the real entry point on Azurite: `process_blob.main` with the EventGridEvent the
Functions host builds moves each kind to `quarantine/{name}` in the same container (server-side copy,
then delete), with the reason in the copy's metadata and an audit entry; redelivery and the copy's own
BlobCreated event do nothing more."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest
from azure.storage.blob import ContentSettings

import process_blob
from shared import azure_storage
from shared.audit import AuditAction
from shared.azure_storage import BlobRawStore
from shared.errors import BlobNotFound, StorageUnavailable
from shared.processing import PROCESSING_ACTOR, Outcome, parse_blob_created, process_blob_created
from shared.rawstore import QUARANTINE_DETAIL, QUARANTINE_REASON, QUARANTINED_AT, quarantine_name
from tests.support.datacollector import blob_created_event
from tests.support.runtime import Runtime
from tests.support.storage import raw_name

pytestmark = pytest.mark.integration

GOOD = orjson.dumps([{"Computer": "web-1", "Message": "hello"}, {"Computer": "db-1", "Message": "hi"}])
GOOD_GZIP = gzip.compress(GOOD)
RAW_SETTINGS = ContentSettings(content_type="application/json", content_encoding="gzip")


def metadata_for(workspace_id: str, data: bytes, /, **changes: str | None) -> dict[str, str]:
    """Ingest's metadata for the stored bytes `data`, with `changes` (None drops a key)."""
    metadata: dict[str, str | None] = {
        "workspace_id": workspace_id,
        "sha256": hashlib.sha256(data).hexdigest(),
        "log_type": "Test_CL",
        "record_count": "2",
        "received_at": datetime.now(UTC).isoformat(),
    }
    metadata.update(changes)
    return {k: v for k, v in metadata.items() if v is not None}


def bomb() -> bytes:
    # About 30 KB stored, 31 MiB once inflated: past the 30 MiB limit.
    return gzip.compress(b"[" + b" " * (31 * 1024 * 1024) + b"]", compresslevel=9)


@dataclass(frozen=True)
class Poison:
    data: bytes
    reason: str
    changes: dict[str, str | None]


def poison(data: bytes, reason: str, **changes: str | None) -> Poison:
    return Poison(data=data, reason=reason, changes=changes)


POISON: dict[str, Any] = {
    "corrupt gzip": lambda: poison(b"\x1f\x8b\x08\x00garbage", "InvalidDataFormat"),
    "truncated gzip": lambda: poison(GOOD_GZIP[:-12], "InvalidDataFormat"),
    "invalid JSON": lambda: poison(gzip.compress(b'[{"a": 1},'), "InvalidDataFormat"),
    "non-object elements": lambda: poison(gzip.compress(b"[1, 2]"), "InvalidDataFormat"),
    "sha256 mismatch": lambda: poison(GOOD_GZIP, "CorruptBlob", sha256="0" * 64),
    "inflates past the limit": lambda: poison(bomb(), "RequestEntityTooLarge"),
    "metadata missing": lambda: poison(
        GOOD_GZIP, "CorruptBlob", workspace_id=None, sha256=None, record_count=None
    ),
}


def upload(runtime: Runtime, name: str, data: bytes, metadata: dict[str, str]) -> None:
    runtime.blob_service.get_blob_client(f"ws-{runtime.workspace_id}", name).upload_blob(
        data, metadata=metadata, content_settings=RAW_SETTINGS
    )


def quarantine_entries(runtime: Runtime) -> list[dict[str, Any]]:
    chain = runtime.services.audit.read(runtime.workspace_id)
    return [{"actor": e.actor, **e.details} for e in chain.entries if e.action == AuditAction.QUARANTINE]


def outcome_of(runtime: Runtime, name: str) -> Outcome:
    """What process_blob.main does for this event, with the outcome it does not return."""
    created = parse_blob_created(
        "Microsoft.Storage.BlobCreated",
        f"/blobServices/default/containers/ws-{runtime.workspace_id}/blobs/{name}",
    )
    assert created is not None
    current = runtime.services
    return process_blob_created(
        created, raw_store=current.raw_store, sink=current.database, audit=current.audit
    )


@pytest.mark.parametrize("kind", list(POISON))
def test_given_a_poison_blob_when_its_event_is_delivered_then_it_is_moved_to_quarantine_and_audited(
    sqlite_runtime: Runtime, kind: str
) -> None:
    runtime = sqlite_runtime
    case: Poison = POISON[kind]()
    name = raw_name(date(2024, 1, 1))
    metadata = metadata_for(runtime.workspace_id, case.data, **case.changes)
    upload(runtime, name, case.data, metadata)
    container = f"ws-{runtime.workspace_id}"

    process_blob.main(blob_created_event(container, name, content_length=len(case.data)))

    target = quarantine_name(name)
    assert runtime.blobs() == [target]
    moved = runtime.blob_service.get_blob_client(container, target)
    assert moved.download_blob(decompress=False).readall() == case.data
    properties = moved.get_blob_properties()
    assert properties.metadata[QUARANTINE_REASON] == case.reason
    assert properties.metadata[QUARANTINE_DETAIL]
    assert datetime.fromisoformat(properties.metadata[QUARANTINED_AT]) <= datetime.now(UTC)
    assert {k: properties.metadata[k] for k in metadata} == metadata
    assert properties.content_settings.content_encoding == "gzip"  # a server-side copy keeps them
    assert quarantine_entries(runtime) == [
        {"actor": PROCESSING_ACTOR, "blob": name, "reason": case.reason, "quarantined_as": target}
    ]
    database = runtime.services.database
    assert database.list_usage(runtime.workspace_id) == []
    assert database.blob_processed(runtime.workspace_id, name) is False

    # Event Grid delivers at least once: the same event again finds nothing to do.
    process_blob.main(blob_created_event(container, name))
    assert outcome_of(runtime, name) is Outcome.MISSING
    # The copy's own BlobCreated event (it is in the ws-* container too) is not a raw blob.
    process_blob.main(blob_created_event(container, target))
    assert outcome_of(runtime, target) is Outcome.IGNORED

    assert runtime.blobs() == [target]
    assert len(quarantine_entries(runtime)) == 1
    assert database.list_usage(runtime.workspace_id) == []


def test_given_a_poison_blob_beside_a_good_one_when_both_delivered_then_only_the_good_one_is_counted(
    runtime: Runtime,
) -> None:
    container = f"ws-{runtime.workspace_id}"
    good, bad = raw_name(date(2024, 1, 1)), raw_name(date(2024, 1, 1))
    upload(runtime, good, GOOD_GZIP, metadata_for(runtime.workspace_id, GOOD_GZIP))
    upload(runtime, bad, GOOD_GZIP, metadata_for(runtime.workspace_id, GOOD_GZIP, sha256="0" * 64))

    for name in (good, bad, good, bad):
        process_blob.main(blob_created_event(container, name))

    database = runtime.services.database
    assert sorted((r.computer, r.records) for r in database.list_usage(runtime.workspace_id)) == [
        ("db-1", 1),
        ("web-1", 1),
    ]
    assert database.blob_processed(runtime.workspace_id, good)
    assert database.blob_processed(runtime.workspace_id, bad) is False
    assert runtime.blobs() == sorted([good, quarantine_name(bad)])
    assert [e["blob"] for e in quarantine_entries(runtime)] == [bad]


# -- the adapter -------------------------------------------------------------------------------------


def test_given_a_blob_already_moved_when_quarantined_again_then_it_succeeds_and_changes_nothing(
    sqlite_runtime: Runtime,
) -> None:
    store = sqlite_runtime.services.raw_store
    name = raw_name(date(2024, 1, 1))
    upload(sqlite_runtime, name, b"abc", {"workspace_id": sqlite_runtime.workspace_id})
    store.quarantine_raw(sqlite_runtime.workspace_id, name, reason="CorruptBlob", detail="first")
    moved = sqlite_runtime.blob_service.get_blob_client(
        f"ws-{sqlite_runtime.workspace_id}", quarantine_name(name)
    )
    first = moved.get_blob_properties()

    store.quarantine_raw(sqlite_runtime.workspace_id, name, reason="CorruptBlob", detail="second")

    assert sqlite_runtime.blobs() == [quarantine_name(name)]
    again = moved.get_blob_properties()
    assert again.etag == first.etag
    assert again.metadata[QUARANTINE_DETAIL] == "first"


def test_given_neither_the_blob_nor_its_copy_when_quarantined_then_blob_not_found(
    sqlite_runtime: Runtime,
) -> None:
    with pytest.raises(BlobNotFound):
        sqlite_runtime.services.raw_store.quarantine_raw(
            sqlite_runtime.workspace_id, raw_name(date(2024, 1, 1)), reason="CorruptBlob", detail="x"
        )


def test_given_a_non_ascii_detail_when_quarantined_then_the_metadata_carries_it_as_ascii(
    sqlite_runtime: Runtime,
) -> None:
    name = raw_name(date(2024, 1, 1))
    upload(sqlite_runtime, name, b"abc", {"workspace_id": sqlite_runtime.workspace_id})

    sqlite_runtime.services.raw_store.quarantine_raw(
        sqlite_runtime.workspace_id, name, reason="InvalidDataFormat", detail="d\u00e9j\u00e0\nvu"
    )

    moved = sqlite_runtime.blob_service.get_blob_client(
        f"ws-{sqlite_runtime.workspace_id}", quarantine_name(name)
    )
    assert moved.get_blob_properties().metadata[QUARANTINE_DETAIL] == "d?j??vu"


class PendingCopy:
    """A destination BlobClient whose copy stays pending for `polls` property reads, then ends `final`."""

    def __init__(self, polls: int, final: str = "success") -> None:
        self.blob_name = "quarantine/x"
        self.polls = polls
        self.final = final
        self.aborted: list[str] = []

    def get_blob_properties(self) -> Any:
        self.polls -= 1
        status = "pending" if self.polls > 0 else self.final

        class Copy:
            pass

        class Properties:
            copy = Copy()

        Properties.copy.status = status  # type: ignore[attr-defined]
        return Properties()

    def abort_copy(self, copy_id: str) -> None:
        self.aborted.append(copy_id)


def test_given_a_pending_copy_when_awaited_then_polled_until_it_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(azure_storage, "COPY_POLL_SECONDS", 0.001)
    target = PendingCopy(polls=3)

    BlobRawStore._await_copy(target, {"copy_status": "pending", "copy_id": "c1"})  # type: ignore[arg-type]

    assert target.polls == 0 and target.aborted == []


def test_given_a_copy_pending_too_long_when_awaited_then_aborted_and_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(azure_storage, "COPY_POLL_SECONDS", 0.001)
    monkeypatch.setattr(azure_storage, "COPY_TIMEOUT_SECONDS", 0.02)
    target = PendingCopy(polls=10**9)

    with pytest.raises(StorageUnavailable):
        BlobRawStore._await_copy(target, {"copy_status": "pending", "copy_id": "c1"})  # type: ignore[arg-type]

    assert target.aborted == ["c1"]


def test_given_a_failed_copy_when_awaited_then_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(azure_storage, "COPY_POLL_SECONDS", 0.001)
    with pytest.raises(StorageUnavailable):
        BlobRawStore._await_copy(PendingCopy(polls=2, final="failed"), {"copy_status": "pending"})  # type: ignore[arg-type]


def test_given_a_quarantined_blob_past_the_window_when_retention_runs_then_it_is_purged_with_its_day(
    sqlite_runtime: Runtime,
) -> None:
    store = sqlite_runtime.services.raw_store
    workspace_id = sqlite_runtime.workspace_id
    old_day = datetime(2020, 1, 2, 3, tzinfo=UTC)
    name = raw_name(old_day.date(), hour=3)
    store.put_raw(
        workspace_id, name, b"not gzip", metadata={"workspace_id": workspace_id, "sha256": "0" * 64}
    )
    store.quarantine_raw(workspace_id, name, reason="InvalidDataFormat", detail="corrupt")

    assert old_day.date() in store.list_raw_days(workspace_id)
    assert store.delete_raw_day(workspace_id, old_day.date()).blobs == 1
    assert sqlite_runtime.blobs() == []
