"""Storage for fault tests: an Azurite of the test's own that it may stop and start again (its data is
kept on disk across the outage), and what a workspace holds, read with the SDK independently of the
code under test."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devhost.azurite import Azurite
from shared import azure_storage
from shared.settings import StorageSettings

# The SDK's default policies retry an unreachable endpoint for about 85 s before the 503 goes out (see
# the report); the fault tests want the answer, not the wait, so the runtime's clients fail at once.
FAIL_FAST_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 2}


def fail_fast_storage_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime's blob and table clients, built as production builds them but without SDK retries."""
    for name, client in (("blob_service", BlobServiceClient), ("table_service", TableServiceClient)):
        monkeypatch.setattr(azure_storage, name, partial(_from_settings, client))


def _from_settings(client: type[BlobServiceClient | TableServiceClient], settings: StorageSettings) -> Any:
    assert settings.connection_string is not None, "the fault tests run on Azurite"
    return client.from_connection_string(settings.connection_string, **FAIL_FAST_OPTIONS)


@contextmanager
def storage_down(azurite: Azurite) -> Iterator[None]:
    """Azurite stopped for the block, started again (same ports, same data) after it."""
    azurite.stop()
    try:
        yield
    finally:
        azurite.start()


@dataclass(frozen=True)
class StoredBlob:
    name: str
    sha256: str  # metadata: of the gzip bytes as stored
    records: list[dict[str, Any]]


def stored_blobs(service: BlobServiceClient, workspace_id: str) -> list[StoredBlob]:
    """Every raw blob of the workspace with its records."""
    container = service.get_container_client(f"ws-{workspace_id}")
    found = []
    for blob in container.list_blobs(name_starts_with="raw/", include=["metadata"]):
        data = container.download_blob(blob.name, decompress=False).readall()
        found.append(StoredBlob(blob.name, blob.metadata["sha256"], json.loads(gzip.decompress(data))))
    return found
