"""Azurite for the test session (through devhost.azurite, the launcher the local host uses) and
small direct-SDK helpers the tests use to look at storage independently of the code under test."""

from __future__ import annotations

import gzip
import shutil
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.azurite import AZURITE_SCRIPT, Azurite, AzuritePorts

NODE_HINT = "Install Node.js 20 and npm (sudo apt-get install -y nodejs npm), then run `npm install`."


class MissingAzurite(RuntimeError):
    pass


def check_azurite_installed() -> None:
    if shutil.which("node") is None:
        raise MissingAzurite(f"`node` is not on PATH, so Azurite cannot run. {NODE_HINT}")
    if not AZURITE_SCRIPT.is_file():
        raise MissingAzurite(
            f"Azurite is not installed ({AZURITE_SCRIPT} is missing): run `npm install` in the repository."
        )


def start_azurite(location: Path) -> Azurite:
    check_azurite_installed()
    azurite = Azurite(
        location=location / "data", ports=AzuritePorts.free(), log_file=location / "azurite.log"
    )
    try:
        return azurite.start()
    except BaseException:
        azurite.stop()
        raise


def azurite_for_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """An Azurite for a fixture to yield (the session's, or a module's own); a missing install fails
    the test with how to install it."""
    try:
        server = start_azurite(tmp_path_factory.mktemp("azurite"))
    except MissingAzurite as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def blob_service(connection_string: str, **options: object) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(connection_string, **options)  # type: ignore[arg-type]


def container_blob_names(service: BlobServiceClient, workspace_id: str) -> list[str]:
    """Every blob in a workspace's container ([] when the container does not exist)."""
    container = service.get_container_client(f"ws-{workspace_id}")
    if not container.exists():
        return []
    return sorted(blob.name for blob in container.list_blobs())


def raw_name(day: date, *, hour: int = 0, log_type: str = "Test_CL") -> str:
    """A raw blob name as ingest writes them: raw/yyyy/MM/dd/HH/{LogType}/{32 hex}.json.gz."""
    return f"raw/{day:%Y/%m/%d}/{hour:02d}/{log_type}/{uuid.uuid4().hex}.json.gz"


def gz(data: bytes) -> bytes:
    return gzip.compress(data)
