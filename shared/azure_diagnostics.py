"""Azure adapters of diagnostics sources: the source registry, a table in Sluice's own storage, and the
customer's diagnostics tables, which are only ever queried. Azure SDK errors are translated here
(shared.azure_storage.translated)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EntityProperty, TableClient, TableServiceClient, UpdateMode

from shared.azure_storage import LazyTable, table_service, translated
from shared.diagnostics import (
    BATCH_RECORDS,
    Checkpoint,
    CredentialKind,
    DiagnosticsReader,
    DiagnosticsSource,
    DiagnosticsTable,
    Position,
    SourceCredential,
    account_name,
)
from shared.errors import NotFound
from shared.runtime import Services, utc_now

SOURCES_TABLE = "diagsources"
# A source and its checkpoints share a partition (the source id): registered and removed in one
# transaction. The source's row is this one; each checkpoint's row is its table's name.
SOURCE_ROW_KEY = "source"
PAGE_SIZE = 1000  # the most entities the Table service returns in one page


class TableSourceRegistry:
    def __init__(self, service: TableServiceClient, *, table_name: str = SOURCES_TABLE) -> None:
        self._table = LazyTable(service, table_name)

    def list_sources(self, workspace_id: str | None = None) -> list[DiagnosticsSource]:
        query, parameters = "RowKey eq @row", {"row": SOURCE_ROW_KEY}
        if workspace_id is not None:
            query, parameters = (
                f"{query} and workspace_id eq @workspace",
                {**parameters, "workspace": workspace_id},
            )
        with translated("listing diagnostics sources"):
            try:
                entities = list(self._table.client.query_entities(query, parameters=parameters))
            except ResourceNotFoundError:
                return []
        return sorted(map(_source, entities), key=lambda source: source.created_at)

    def get_source(self, source_id: str) -> DiagnosticsSource:
        with translated("reading a diagnostics source"):
            try:
                entity = self._table.client.get_entity(partition_key=source_id, row_key=SOURCE_ROW_KEY)
            except ResourceNotFoundError:
                raise NotFound(f"Diagnostics source {source_id} does not exist.") from None
        return _source(entity)

    def create_source(self, source: DiagnosticsSource, *, start: Position) -> None:
        self._table.ensure()
        checkpoints = (Checkpoint(source.source_id, table, start, None, "") for table in source.tables)
        operations = [
            ("create", _source_entity(source)),
            *(("create", _checkpoint_entity(c)) for c in checkpoints),
        ]
        with translated("registering a diagnostics source"):
            self._table.client.submit_transaction(operations)

    def delete_source(self, source_id: str) -> None:
        self._table.delete_matching(source_id, what="removing a diagnostics source")

    def get_checkpoint(self, source_id: str, table: DiagnosticsTable) -> Checkpoint:
        with translated("reading a diagnostics checkpoint"):
            try:
                entity = self._table.client.get_entity(partition_key=source_id, row_key=table.value)
            except ResourceNotFoundError:
                raise NotFound(f"Diagnostics source {source_id} has no checkpoint for {table}.") from None
        etag = entity.metadata["etag"]
        assert etag is not None  # the service sends every entity's ETag
        return Checkpoint(
            source_id=source_id,
            table=table,
            position=Position(entity["position_partition_key"], entity["position_row_key"]),
            leased_until=entity.get("leased_until"),
            etag=etag,
        )

    def try_replace_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint | None:
        with translated("moving a diagnostics checkpoint"):
            try:
                stored = self._table.client.update_entity(
                    _checkpoint_entity(checkpoint),
                    mode=UpdateMode.REPLACE,
                    etag=checkpoint.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):  # another run, or the source removed
                return None
        return replace(checkpoint, etag=stored["etag"])


def _source_entity(source: DiagnosticsSource) -> dict[str, Any]:
    return {
        "PartitionKey": source.source_id,
        "RowKey": SOURCE_ROW_KEY,
        "workspace_id": source.workspace_id,
        "table_endpoint": source.table_endpoint,
        "tables": ",".join(source.tables),
        "credential_kind": source.credential_kind.value,
        "credential_secret": source.credential_secret,
        "created_at": source.created_at,
    }


def _source(entity: Any) -> DiagnosticsSource:
    return DiagnosticsSource(
        source_id=entity["PartitionKey"],
        workspace_id=entity["workspace_id"],
        table_endpoint=entity["table_endpoint"],
        tables=tuple(DiagnosticsTable(name) for name in entity["tables"].split(",")),
        credential_kind=CredentialKind(entity["credential_kind"]),
        credential_secret=entity["credential_secret"],
        created_at=entity["created_at"],
    )


def _checkpoint_entity(checkpoint: Checkpoint) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": checkpoint.source_id,
        "RowKey": checkpoint.table.value,
        "position_partition_key": checkpoint.position.partition_key,
        "position_row_key": checkpoint.position.row_key,
    }
    if checkpoint.leased_until is not None:
        entity["leased_until"] = checkpoint.leased_until
    return entity


class AzureDiagnosticsTables:
    """The customer's diagnostics tables through azure-data-tables, with the source's SAS or key. Only
    queries are sent: with a read-only SAS the account itself refuses anything else."""

    def query_entities(
        self, endpoint: str, table: DiagnosticsTable, credential: SourceCredential, query_filter: str
    ) -> Iterator[dict[str, Any]]:
        client = TableClient(
            endpoint=endpoint, table_name=table.value, credential=_sdk_credential(endpoint, credential)
        )
        with client, translated(f"reading {table} of a diagnostics source"):
            try:
                for entity in client.query_entities(query_filter, results_per_page=PAGE_SIZE):
                    yield _plain(entity)
            except ResourceNotFoundError:  # the extension creates its tables on its first transfer
                return


def _sdk_credential(
    endpoint: str, credential: SourceCredential
) -> AzureSasCredential | AzureNamedKeyCredential:
    if credential.kind is CredentialKind.SAS:
        return AzureSasCredential(credential.value)
    return AzureNamedKeyCredential(account_name(endpoint), credential.value)


def _plain(entity: dict[str, Any]) -> dict[str, Any]:
    """Int64 (and other typed) properties come back as EntityProperty; the core sees their values."""
    return {
        name: value.value if isinstance(value, EntityProperty) else value for name, value in entity.items()
    }


def source_registry(current: Services) -> TableSourceRegistry:
    return TableSourceRegistry(table_service(current.settings.storage))


def diagnostics_reader(current: Services, *, max_records: int = BATCH_RECORDS) -> DiagnosticsReader:
    return DiagnosticsReader(
        sources=source_registry(current),
        tables=AzureDiagnosticsTables(),
        secrets=current.secrets,
        workspaces=current.registry,
        writer=current.writer,
        clock=utc_now,
        max_records=max_records,
    )
