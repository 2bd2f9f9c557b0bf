"""BlobCreated delivery over a fake blob listing: the event's shape, receipts, retries, dead letters, and
a dispatcher thread that outlives failures of its own bookkeeping."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest

from devhost.events import MAX_RETRY_SECONDS, BlobCreatedDispatcher, BlobVersion, Receipt, Receipts
from devhost.functions import FunctionSpec
from shared.processing import BlobCreated, parse_blob_created
from tests.e2e.support import eventually

WORKSPACE = "0b6a7a6e-8a56-4b5e-9d1b-3c1c2f0e9a11"
CONTAINER = f"ws-{WORKSPACE}"
BLOB = "raw/2024/01/01/02/AppEvents/0123456789abcdef0123456789abcdef.json.gz"
MAX_ATTEMPTS = 3
FIRST_RETRY = 10.0


def _blob(name: str = BLOB, *, etag: str = "0x8DC0001", minutes: int = 0) -> BlobVersion:
    return BlobVersion(
        container=CONTAINER,
        name=name,
        etag=etag,
        url=f"http://127.0.0.1:10000/devstoreaccount1/{CONTAINER}/{name}",
        content_type="application/json",
        content_length=123,
        blob_type="BlockBlob",
        last_modified=datetime(2024, 1, 1, 2, 0, tzinfo=UTC) + timedelta(minutes=minutes),
    )


class FakeSource:
    account = "devstoreaccount1"

    def __init__(self, *blobs: BlobVersion) -> None:
        self.blobs = list(blobs)

    def list_blobs(self) -> list[BlobVersion]:
        return list(self.blobs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """The eventGridTrigger function: records every event, failing the first `failures` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.events: list[func.EventGridEvent] = []

    def __call__(self, event: func.EventGridEvent) -> None:
        self.events.append(event)
        if len(self.events) <= self.failures:
            raise RuntimeError(f"failure {len(self.events)}")


def _dispatcher(
    tmp_path: Path, source: FakeSource, main: Callable[[func.EventGridEvent], None], clock: FakeClock
) -> BlobCreatedDispatcher:
    function = FunctionSpec(
        name="process_blob", trigger={"type": "eventGridTrigger", "name": "event"}, entry=main
    )
    return BlobCreatedDispatcher(
        function,
        source=source,
        receipts=Receipts(tmp_path / "receipts" / "process_blob.jsonl"),
        dead_letter_dir=tmp_path / "deadletter" / "process_blob",
        max_attempts=MAX_ATTEMPTS,
        first_retry_seconds=FIRST_RETRY,
        clock=clock,
    )


def test_given_a_new_blob_when_polled_then_the_function_gets_a_blob_created_event(tmp_path: Path) -> None:
    main = Recorder()
    dispatcher = _dispatcher(tmp_path, FakeSource(_blob()), main, FakeClock())

    dispatcher.poll()
    dispatcher.deliver_due()

    (event,) = main.events
    assert event.event_type == "Microsoft.Storage.BlobCreated"
    assert event.subject == f"/blobServices/default/containers/{CONTAINER}/blobs/{BLOB}"
    assert event.topic.endswith("/providers/Microsoft.Storage/storageAccounts/devstoreaccount1")
    assert event.event_time == datetime(2024, 1, 1, 2, 0, tzinfo=UTC)
    assert event.get_json() == {
        "api": "PutBlob",
        "url": f"http://127.0.0.1:10000/devstoreaccount1/{CONTAINER}/{BLOB}",
        "eTag": "0x8DC0001",
        "contentType": "application/json",
        "contentLength": 123,
        "blobType": "BlockBlob",
    }
    # What process_blob reads from it.
    assert parse_blob_created(event.event_type, event.subject) == BlobCreated(
        container=CONTAINER, blob_name=BLOB
    )


def test_given_a_delivered_blob_then_neither_a_later_poll_nor_a_restart_delivers_it_again(
    tmp_path: Path,
) -> None:
    main = Recorder()
    source = FakeSource(_blob())
    dispatcher = _dispatcher(tmp_path, source, main, FakeClock())
    dispatcher.poll()
    dispatcher.deliver_due()

    dispatcher.poll()
    dispatcher.deliver_due()
    restarted = _dispatcher(tmp_path, source, main, FakeClock())
    restarted.poll()
    restarted.deliver_due()

    assert len(main.events) == 1


def test_given_a_blob_overwritten_with_a_new_etag_then_the_new_version_is_delivered(tmp_path: Path) -> None:
    main = Recorder()
    source = FakeSource(_blob(etag="0x1"))
    dispatcher = _dispatcher(tmp_path, source, main, FakeClock())
    dispatcher.poll()
    dispatcher.deliver_due()

    source.blobs = [_blob(etag="0x2", minutes=1)]
    dispatcher.poll()
    dispatcher.deliver_due()

    assert [e.get_json()["eTag"] for e in main.events] == ["0x1", "0x2"]
    assert main.events[0].id != main.events[1].id


def test_given_several_new_blobs_then_they_are_delivered_oldest_first(tmp_path: Path) -> None:
    main = Recorder()
    newer, older = _blob("raw/b", minutes=5), _blob("raw/a", minutes=1)
    dispatcher = _dispatcher(tmp_path, FakeSource(newer, older), main, FakeClock())

    dispatcher.poll()
    dispatcher.deliver_due()

    assert [e.subject.rsplit("/blobs/", 1)[1] for e in main.events] == ["raw/a", "raw/b"]


def test_given_a_failing_delivery_then_it_is_retried_after_backoff_with_the_same_event_id(
    tmp_path: Path,
) -> None:
    main = Recorder(failures=1)
    clock = FakeClock()
    dispatcher = _dispatcher(tmp_path, FakeSource(_blob()), main, clock)
    dispatcher.poll()
    dispatcher.deliver_due()

    dispatcher.deliver_due()
    assert len(main.events) == 1  # not due yet
    clock.now += FIRST_RETRY
    dispatcher.deliver_due()

    assert len(main.events) == 2
    assert main.events[0].id == main.events[1].id
    assert not (tmp_path / "deadletter").exists()


def test_given_a_delivery_that_always_fails_then_it_is_dead_lettered_once_and_not_retried(
    tmp_path: Path,
) -> None:
    main = Recorder(failures=100)
    clock = FakeClock()
    source = FakeSource(_blob())
    dispatcher = _dispatcher(tmp_path, source, main, clock)
    dispatcher.poll()

    for _ in range(MAX_ATTEMPTS + 2):
        dispatcher.deliver_due()
        clock.now += FIRST_RETRY * 2**MAX_ATTEMPTS
        dispatcher.poll()

    assert len(main.events) == MAX_ATTEMPTS
    (dead_letter,) = (tmp_path / "deadletter" / "process_blob").glob("*.json")
    entry = json.loads(dead_letter.read_text(encoding="utf-8"))
    assert dead_letter.stem == entry["id"] == main.events[0].id
    assert entry["eventType"] == "Microsoft.Storage.BlobCreated"
    assert entry["subject"] == main.events[0].subject
    assert entry["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert entry["deliveryAttempts"] == MAX_ATTEMPTS
    assert entry["lastDeliveryOutcome"] == f"RuntimeError: failure {MAX_ATTEMPTS}"
    restarted = _dispatcher(tmp_path, source, main, clock)
    restarted.poll()
    restarted.deliver_due()
    assert len(main.events) == MAX_ATTEMPTS


def test_given_a_receipt_file_torn_by_a_crash_then_it_still_loads_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "receipts.jsonl"
    path.write_text('["c", "a", "1"]\n7\n["c", "b"', encoding="utf-8")

    Receipts(path).add(("c", "d", "4"))
    reloaded = Receipts(path)

    assert ("c", "a", "1") in reloaded
    assert ("c", "d", "4") in reloaded
    assert ("c", "b", "2") not in reloaded


class FlakySource(FakeSource):
    """Storage that is unreachable on the first listing."""

    def __init__(self, *blobs: BlobVersion) -> None:
        super().__init__(*blobs)
        self.listings = 0

    def list_blobs(self) -> list[BlobVersion]:
        self.listings += 1
        if self.listings == 1:
            raise ConnectionError("storage is not there yet")
        return super().list_blobs()


def test_given_a_running_dispatcher_when_a_listing_fails_then_it_keeps_polling_and_delivers(
    tmp_path: Path,
) -> None:
    delivered = threading.Event()
    function = FunctionSpec(
        name="process_blob",
        trigger={"type": "eventGridTrigger", "name": "event"},
        entry=lambda event: delivered.set(),
    )
    dispatcher = BlobCreatedDispatcher(
        function,
        source=FlakySource(_blob()),
        receipts=Receipts(tmp_path / "receipts.jsonl"),
        dead_letter_dir=tmp_path / "deadletter",
        poll_interval=0.05,
    )

    dispatcher.start()
    try:
        assert delivered.wait(5.0)
    finally:
        dispatcher.stop(5.0)


class ReceiptsFailingOnce(Receipts):
    """Receipts on a disk that is full for the first write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failures = 1

    def add(self, receipt: Receipt) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        super().add(receipt)


def test_given_a_running_dispatcher_when_a_receipt_cannot_be_written_then_it_logs_and_later_events_still_flow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: list[str] = []
    second = threading.Event()

    def main(event: func.EventGridEvent) -> None:
        delivered.append(event.subject.rsplit("/blobs/", 1)[1])
        if len(delivered) == 2:
            second.set()

    source = FakeSource(_blob("raw/a"))
    dispatcher = BlobCreatedDispatcher(
        FunctionSpec(name="process_blob", trigger={"type": "eventGridTrigger", "name": "event"}, entry=main),
        source=source,
        receipts=ReceiptsFailingOnce(tmp_path / "receipts.jsonl"),
        dead_letter_dir=tmp_path / "deadletter",
        poll_interval=0.05,
        error_backoff_seconds=0.05,
    )

    with caplog.at_level(logging.ERROR, logger="sluice.devhost.events"):
        dispatcher.start()
        try:
            eventually(lambda: delivered or None, timeout=5.0, what="the first blob is delivered")
            source.blobs.append(_blob("raw/b", minutes=1))
            assert second.wait(5.0), f"only {delivered} delivered"
            time.sleep(0.2)  # a few more polls: the first blob, without a receipt, is not delivered again
        finally:
            dispatcher.stop(5.0)

    assert delivered == ["raw/a", "raw/b"]
    (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.exc_info is not None
    assert isinstance(failure.exc_info[1], OSError)
    reloaded = Receipts(tmp_path / "receipts.jsonl")
    assert _blob("raw/b", minutes=1).receipt in reloaded
    assert _blob("raw/a").receipt not in reloaded  # so a restart delivers it again


def test_given_a_dead_letter_that_cannot_be_written_then_it_is_logged_and_the_event_is_retried_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main = Recorder(failures=100)
    clock = FakeClock()
    dispatcher = _dispatcher(tmp_path, FakeSource(_blob()), main, clock)
    (tmp_path / "deadletter").write_text("a file where the dead-letter folder goes", encoding="utf-8")
    dispatcher.poll()

    with caplog.at_level(logging.ERROR, logger="sluice.devhost.events"):
        for _ in range(MAX_ATTEMPTS):
            dispatcher.deliver_due()  # the last attempt's dead letter fails, and does not raise
            clock.now += FIRST_RETRY * 2**MAX_ATTEMPTS

    assert len(main.events) == MAX_ATTEMPTS
    assert any(r.exc_info and isinstance(r.exc_info[1], OSError) for r in caplog.records)
    (tmp_path / "deadletter").unlink()
    clock.now += MAX_RETRY_SECONDS
    dispatcher.deliver_due()
    dispatcher.poll()
    dispatcher.deliver_due()

    assert len(main.events) == MAX_ATTEMPTS + 1
    (dead_letter,) = (tmp_path / "deadletter" / "process_blob").glob("*.json")
    assert json.loads(dead_letter.read_text(encoding="utf-8"))["deliveryAttempts"] == MAX_ATTEMPTS + 1
    assert not list((tmp_path / "deadletter" / "process_blob").glob("*.tmp"))
