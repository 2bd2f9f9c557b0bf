"""The composition root: settings are read and adapters built once per process, on first use (not at
import, so a cold start stays cheap), and shared by every invocation."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.settings import Settings
from shared.telemetry import configure_telemetry

if TYPE_CHECKING:
    from shared.azure_storage import BlobRawStore, TableWorkspaceRegistry
    from shared.ingest import DataCollectorIngest
    from shared.secretstore import LocalSecretStore
    from shared.sql import Database
    from shared.workspaces import WorkspaceDirectory

DIRECTORY_CACHE_TTL_SECONDS = 30.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    raw_store: BlobRawStore
    registry: TableWorkspaceRegistry
    secrets: LocalSecretStore
    directory: WorkspaceDirectory
    database: Database
    data_collector: DataCollectorIngest


def build_services(settings: Settings) -> Services:
    from shared.azure_storage import BlobRawStore, TableWorkspaceRegistry, blob_service, table_service
    from shared.ingest import DataCollectorIngest
    from shared.secretstore import LocalSecretStore
    from shared.sql import Database
    from shared.workspaces import WorkspaceDirectory

    raw_store = BlobRawStore(blob_service(settings.storage))
    registry = TableWorkspaceRegistry(table_service(settings.storage))
    secrets = LocalSecretStore(settings.secrets_dir)
    directory = WorkspaceDirectory(
        registry=registry, secrets=secrets, cache_ttl_seconds=DIRECTORY_CACHE_TTL_SECONDS
    )
    return Services(
        settings=settings,
        raw_store=raw_store,
        registry=registry,
        secrets=secrets,
        directory=directory,
        database=Database.open(settings.sql_dialect, settings.sql_connection),
        data_collector=DataCollectorIngest(directory=directory, raw_store=raw_store, clock=utc_now),
    )


_services: Services | None = None
_lock = threading.Lock()


def services() -> Services:
    global _services
    with _lock:
        if _services is None:
            settings = Settings.from_env()
            configure_telemetry(
                level=settings.log_level, appinsights_connection_string=settings.appinsights_connection_string
            )
            _services = build_services(settings)
        return _services


def reset_services() -> None:
    """Forget the built services so the next call reads the settings again (tests, the local host)."""
    global _services
    with _lock:
        if _services is not None:
            _services.database.close()
        _services = None
