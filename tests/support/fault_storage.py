"""Storage for fault tests: an Azurite of the test's own that it may stop and start again (its data is
kept on disk across the outage), and what a workspace holds, read with the SDK independently of the
code under test."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import BlobServiceClient

from devhost.azurite import Azurite


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
