"""The storage clients as production builds them (shared.azure_storage.blob_service / table_service)
against storage that answers 503 to everything, or is not there at all: a bounded number of attempts,
then StorageUnavailable (the caller's 503), instead of the SDKs' default minute and a half of retries."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devhost.azurite import AzuritePorts, free_port
from shared import azure_storage
from shared.azure_storage import (
    STORAGE_RETRIES,
    BlobRawStore,
    TableWorkspaceRegistry,
    blob_service,
    table_service,
)
from shared.errors import StorageUnavailable
from shared.settings import StorageSettings

pytestmark = pytest.mark.integration

WORKSPACE = str(uuid.uuid4())


@dataclass
class UnavailableStorage:
    """An HTTP endpoint that answers every request 503 Server Busy, as storage does when overloaded,
    and counts the requests it got."""

    server: ThreadingHTTPServer
    requests: list[str] = field(default_factory=list)

    @property
    def settings(self) -> StorageSettings:
        return settings_for(self.server.server_address[1])


def settings_for(port: int) -> StorageSettings:
    """Every storage service at the one endpoint on `port`."""
    ports = AzuritePorts(blob=port, queue=port, table=port)
    return StorageSettings(connection_string=ports.connection_string)


@pytest.fixture
def unavailable() -> Iterator[UnavailableStorage]:
    requests: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def _busy(self) -> None:
            requests.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = b"<?xml version='1.0'?><Error><Code>ServerBusy</Code><Message>busy</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_MERGE = _busy

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield UnavailableStorage(server, requests)
    finally:
        server.shutdown()
        server.server_close()


def test_given_blob_storage_answering_503_when_storing_a_raw_blob_then_bounded_attempts_then_unavailable(
    unavailable: UnavailableStorage,
) -> None:
    store = BlobRawStore(blob_service(unavailable.settings))

    with pytest.raises(StorageUnavailable):
        store.put_raw(WORKSPACE, "raw/2024/05/01/13/Syslog/x.json.gz", b"{}", metadata={})

    assert len(unavailable.requests) == 1 + STORAGE_RETRIES
    assert {request.split(" ")[0] for request in unavailable.requests} == {"PUT"}


def test_given_table_storage_answering_503_when_reading_a_workspace_then_bounded_attempts_then_unavailable(
    unavailable: UnavailableStorage,
) -> None:
    registry = TableWorkspaceRegistry(table_service(unavailable.settings))

    with pytest.raises(StorageUnavailable):
        registry.get_workspace(WORKSPACE)

    assert len(unavailable.requests) == 1 + STORAGE_RETRIES


def test_given_no_storage_listening_when_reading_then_unavailable() -> None:
    registry = TableWorkspaceRegistry(table_service(settings_for(free_port())))

    with pytest.raises(StorageUnavailable):
        registry.get_workspace(WORKSPACE)


def test_given_storage_that_accepts_and_never_answers_when_reading_then_bounded_attempts_then_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The read timeout, shortened here: each attempt waits for an answer that never comes."""
    monkeypatch.setattr(azure_storage, "TABLE_READ_TIMEOUT_SECONDS", 0.5)
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept_and_keep_quiet() -> None:
        with suppress(OSError):  # closed at the end of the test
            while True:
                accepted.append(silent.accept()[0])

    threading.Thread(target=accept_and_keep_quiet, daemon=True).start()
    try:
        registry = TableWorkspaceRegistry(table_service(settings_for(silent.getsockname()[1])))

        with pytest.raises(StorageUnavailable):
            registry.get_workspace(WORKSPACE)

        assert len(accepted) == 1 + STORAGE_RETRIES
    finally:
        silent.close()
        for connection in accepted:
            connection.close()
