"""The real runtime (shared.runtime.services()) wired to Azurite and a throwaway database, as the
function folders see it in Azure: settings from the environment, services built on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from shared.plans import DEFAULT_PLAN, Plan
from shared.runtime import Services, reset_services, services
from shared.settings import SqlDialect
from shared.workspaces import NewWorkspace, create_workspace
from tests.support.storage import blob_service, container_blob_names


@dataclass(frozen=True)
class SqlTarget:
    """Where a test's database lives: a dialect and the connection string Database.open() takes."""

    dialect: SqlDialect
    connection: str


@dataclass
class Runtime:
    dialect: SqlDialect
    storage_connection_string: str
    sql_connection: str
    secrets_dir: Path
    workspace: NewWorkspace
    blob_service: BlobServiceClient
    extra_workspaces: list[NewWorkspace] = field(default_factory=list)

    @property
    def services(self) -> Services:
        return services()

    @property
    def workspace_id(self) -> str:
        return self.workspace.workspace.workspace_id

    def new_workspace(self, plan: Plan = DEFAULT_PLAN) -> NewWorkspace:
        current = services()
        created = create_workspace(
            registry=current.registry, secrets=current.secrets, containers=current.raw_store, plan=plan
        )
        self.extra_workspaces.append(created)
        return created

    def blobs(self, workspace_id: str | None = None) -> list[str]:
        """Every blob name in the workspace's container, read with the SDK directly."""
        return container_blob_names(self.blob_service, workspace_id or self.workspace_id)


def configure_runtime(
    monkeypatch: pytest.MonkeyPatch,
    *,
    storage_connection_string: str,
    sql: SqlTarget,
    secrets_dir: Path,
) -> Runtime:
    """Sets the App Settings, rebuilds the services, migrates the database and creates a workspace."""
    monkeypatch.setenv("SLUICE_STORAGE", storage_connection_string)
    monkeypatch.setenv("SLUICE_SQL_DIALECT", sql.dialect.value)
    monkeypatch.setenv("SLUICE_SQL_CONNECTION", sql.connection)
    monkeypatch.setenv("SLUICE_SECRETS_DIR", str(secrets_dir))
    monkeypatch.setenv("SLUICE_LOG_LEVEL", "INFO")
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    reset_services()
    current = services()
    current.database.migrate()
    workspace = create_workspace(
        registry=current.registry, secrets=current.secrets, containers=current.raw_store
    )
    return Runtime(
        dialect=sql.dialect,
        storage_connection_string=storage_connection_string,
        sql_connection=sql.connection,
        secrets_dir=secrets_dir,
        workspace=workspace,
        blob_service=blob_service(storage_connection_string),
    )
