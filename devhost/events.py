"""Event Grid's `Microsoft.Storage.BlobCreated` re-created over Azurite for an eventGridTrigger function.
New blobs in `ws-*` containers (the production subscription's subject filter) are found by polling and
delivered once per (container, name, ETag), like blob receipts; a failing delivery is retried with
backoff, then dead-lettered. Receipts live in the state dir, so a restart does not deliver again what
was handled. Delivery runs on its own thread, never on an HTTP request's, and nothing that fails ends
that thread: a failed listing is tried again at the next poll; a dead letter that cannot be written is
logged and its event delivered again later (then dead-lettered anew); anything else (a receipt that
cannot be written) is logged with its traceback and the loop goes on after a short pause. A blob
version whose receipt could not be written is not delivered again by this run, but is after a restart."""

from __future__ import annotations

import heapq
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.functions import FunctionSpec
from devhost.worker import BackgroundWorker
from shared.durable import write_durably
from shared.ids import CONTAINER_PREFIX, workspace_of_container
from shared.processing import BLOB_CREATED

POLL_INTERVAL_SECONDS = 0.5
MAX_ATTEMPTS = 5
FIRST_RETRY_SECONDS = 1.0  # then doubled: 1, 2, 4, 8 s before the last attempt
MAX_RETRY_SECONDS = 30.0
# The pause after the loop itself failed (a receipt not written, or anything unforeseen), before going on.
ERROR_BACKOFF_SECONDS = 1.0
# Event Grid names the storage account by its ARM id; this one is a stand-in for the emulator.
LOCAL_TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/sluice-local"
    "/providers/Microsoft.Storage/storageAccounts/{account}"
)

log = logging.getLogger("sluice.devhost.events")

Receipt = tuple[str, str, str]  # container, blob name, ETag


@dataclass(frozen=True, slots=True)
class BlobVersion:
    container: str
    name: str
    etag: str
    url: str
    content_type: str
    content_length: int
    blob_type: str
    last_modified: datetime

    @property
    def receipt(self) -> Receipt:
        return (self.container, self.name, self.etag)


class BlobSource(Protocol):
    @property
    def account(self) -> str: ...

    def list_blobs(self) -> list[BlobVersion]: ...


class StorageBlobSource:
    """Lists every blob of every workspace container: fine for a developer's data, not for production."""

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    @property
    def account(self) -> str:
        return str(self._service.account_name)

    def list_blobs(self) -> list[BlobVersion]:
        versions = []
        for container in self._service.list_containers(name_starts_with=CONTAINER_PREFIX):
            client = self._service.get_container_client(container.name)
            try:
                for blob in client.list_blobs():
                    versions.append(
                        BlobVersion(
                            container=container.name,
                            name=blob.name,
                            etag=blob.etag.strip('"'),  # Event Grid's eTag is unquoted
                            url=client.get_blob_client(blob.name).url,
                            content_type=blob.content_settings.content_type or "",
                            content_length=blob.size,
                            blob_type=str(blob.blob_type.value),
                            last_modified=blob.last_modified,
                        )
                    )
            except ResourceNotFoundError:
                continue  # the container was deleted after it was listed
        return versions


def event_document(blob: BlobVersion, *, account: str) -> dict[str, Any]:
    """The event in Event Grid's JSON schema, as it is posted (and dead-lettered). Its id is stable for
    a blob version, so every retry of one delivery carries the same id, as Event Grid's do."""
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{blob.url}#{blob.etag}")),
        "topic": LOCAL_TOPIC.format(account=account),
        "subject": f"/blobServices/default/containers/{blob.container}/blobs/{blob.name}",
        "eventType": BLOB_CREATED,
        "eventTime": blob.last_modified.astimezone(UTC).isoformat(),
        "data": {
            "api": "PutBlob",
            "url": blob.url,
            "eTag": blob.etag,
            "contentType": blob.content_type,
            "contentLength": blob.content_length,
            "blobType": blob.blob_type,
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def function_event(document: dict[str, Any]) -> func.EventGridEvent:
    """What the Python worker hands an eventGridTrigger function for that JSON."""
    return func.EventGridEvent(
        id=document["id"],
        data=document["data"],
        topic=document["topic"],
        subject=document["subject"],
        event_type=document["eventType"],
        event_time=datetime.fromisoformat(document["eventTime"]),
        data_version=document["dataVersion"],
    )


class Receipts:
    """Append-only JSON lines, one per handled blob version, loaded into memory at start."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._seen: set[Receipt] = set()
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for line in text.splitlines():
                try:
                    container, name, etag = json.loads(line)
                except (ValueError, TypeError):
                    continue  # a line torn by a crash: that delivery happens again, which is harmless
                self._seen.add((container, name, etag))
            if text and not text.endswith("\n"):
                self._append("")  # keeps the torn line apart from the next receipt

    def __contains__(self, receipt: Receipt) -> bool:
        return receipt in self._seen

    def add(self, receipt: Receipt) -> None:
        self._append(json.dumps(list(receipt)))
        self._seen.add(receipt)

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


@dataclass(slots=True)
class _Delivery:
    document: dict[str, Any]
    receipt: Receipt
    attempts: int = 0


class BlobCreatedDispatcher(BackgroundWorker):
    def __init__(
        self,
        function: FunctionSpec,
        *,
        source: BlobSource,
        receipts: Receipts,
        dead_letter_dir: Path,
        poll_interval: float = POLL_INTERVAL_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        first_retry_seconds: float = FIRST_RETRY_SECONDS,
        error_backoff_seconds: float = ERROR_BACKOFF_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._function = function
        self._source = source
        self._receipts = receipts
        self._dead_letter_dir = dead_letter_dir
        self._poll_interval = poll_interval
        self._max_attempts = max_attempts
        self._first_retry_seconds = first_retry_seconds
        self._error_backoff_seconds = error_backoff_seconds
        self._clock = clock
        self._pending: dict[Receipt, _Delivery] = {}
        self._due: list[tuple[float, Receipt]] = []  # heap of (when, which)
        super().__init__(name=f"devhost-events-{function.name}")

    def poll(self) -> None:
        """Queues every blob version without a receipt, oldest first, as Event Grid roughly orders them."""
        blobs = sorted(self._source.list_blobs(), key=lambda b: (b.last_modified, b.container, b.name))
        for blob in blobs:
            if blob.receipt in self._receipts or blob.receipt in self._pending:
                continue
            document = event_document(blob, account=self._source.account)
            self._pending[blob.receipt] = _Delivery(document=document, receipt=blob.receipt)
            heapq.heappush(self._due, (self._clock(), blob.receipt))

    def deliver_due(self) -> None:
        while self._due and self._due[0][0] <= self._clock() and not self._stop.is_set():
            _, receipt = heapq.heappop(self._due)
            self._attempt(self._pending[receipt])

    def _run(self) -> None:
        next_poll = self._clock()
        while not self._stop.is_set():
            try:
                if self._clock() >= next_poll:
                    next_poll = self._clock() + self._poll_interval
                    try:
                        self.poll()
                    except Exception as error:  # storage briefly away: keep the thread, try again
                        log.warning("listing blobs failed: %s", error)
                self.deliver_due()
            except Exception:
                # Its own bookkeeping failed (disk full, permissions): this thread is the only one
                # delivering events, so it must not end; say so loudly and go on.
                log.exception(
                    "the BlobCreated dispatcher for %s failed; going on in %.1f s",
                    self._function.name,
                    self._error_backoff_seconds,
                )
                self._stop.wait(self._error_backoff_seconds)
                continue
            wake = min(next_poll, self._due[0][0]) if self._due else next_poll
            self._stop.wait(max(wake - self._clock(), 0.0))

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        document = delivery.document
        context = {
            "event_id": document["id"],
            "subject": document["subject"],
            "attempt": delivery.attempts,
            "workspace_id": workspace_of_container(delivery.receipt[0]),
        }
        try:
            self._function.invoke(function_event(document))
        except Exception as error:
            if delivery.attempts >= self._max_attempts:
                try:
                    path = self._dead_letter(delivery, error)
                except Exception:
                    # Not parked: delivered again later (it may succeed) and then dead-lettered anew.
                    heapq.heappush(self._due, (self._clock() + MAX_RETRY_SECONDS, delivery.receipt))
                    log.exception(
                        "dead-lettering %s failed; delivering it again in %.0f s",
                        document["subject"],
                        MAX_RETRY_SECONDS,
                        extra=context,
                    )
                    return
                log.error("dead-lettered %s to %s", document["subject"], path, extra=context, exc_info=True)
                self._finish(delivery)
                return
            delay = min(self._first_retry_seconds * 2 ** (delivery.attempts - 1), MAX_RETRY_SECONDS)
            log.warning(
                "delivery of %s failed (%s); retrying in %.1f s",
                document["subject"],
                error,
                delay,
                extra=context,
            )
            heapq.heappush(self._due, (self._clock() + delay, delivery.receipt))
            return
        log.info("delivered %s to %s", document["subject"], self._function.name, extra=context)
        self._finish(delivery)

    def _finish(self, delivery: _Delivery) -> None:
        # A dead-lettered event gets a receipt too: it is parked for a person, not retried forever.
        # If the receipt cannot be written, the delivery stays pending with nothing due: polls skip it,
        # so this run does not deliver it again; a restart, finding no receipt, does.
        self._receipts.add(delivery.receipt)
        del self._pending[delivery.receipt]

    def _dead_letter(self, delivery: _Delivery, error: Exception) -> Path:
        """Event Grid's dead-letter form: the event plus why and how often delivery failed."""
        entry = {
            **delivery.document,
            "deadLetterReason": "MaxDeliveryAttemptsExceeded",
            "deliveryAttempts": delivery.attempts,
            "lastDeliveryOutcome": f"{type(error).__name__}: {error}",
            "lastDeliveryAttemptTime": datetime.now(UTC).isoformat(),
        }
        self._dead_letter_dir.mkdir(parents=True, exist_ok=True)
        path = self._dead_letter_dir / f"{delivery.document['id']}.json"
        write_durably(path, json.dumps(entry, indent=2).encode("utf-8"), mode=0o644)
        return path
