"""Azure Storage adapters: the raw-data store on Blob storage and the workspace registry on Table
storage. Azure SDK errors are translated into shared.errors here and nowhere else."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, date, datetime
from http import HTTPStatus
from itertools import islice
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode
from azure.storage.blob import (
    BlobClient,
    BlobProperties,
    BlobServiceClient,
    ContentSettings,
    ExponentialRetry,
)

from shared.agents import Agent, AgentState
from shared.errors import (
    AgentNotFound,
    BlobAlreadyExists,
    BlobNotFound,
    Conflict,
    NotFound,
    StorageRejected,
    StorageUnavailable,
    WorkspaceNotFound,
)
from shared.ids import RAW_PREFIX, container_name, day_prefix, workspace_of_container
from shared.plans import Plan
from shared.rawstore import (
    QUARANTINE_PREFIX,
    DeletedBlobs,
    RawBlob,
    parse_day_prefix,
    quarantine_metadata,
    quarantine_name,
)
from shared.settings import StorageSettings
from shared.workspaces import Workspace, WorkspaceState, stored_version, workspace_changed

WORKSPACES_TABLE = "workspaces"
AGENTS_TABLE = "agents"
ASSERTION_IDS_TABLE = "assertionids"
WORKSPACE_ROW_KEY = "workspace"
# Blob batch deletes take at most 256 sub-requests.
DELETE_BATCH = 256
# A Table transaction (entity group) takes at most 100 operations, all in one partition.
TABLE_TRANSACTION_LIMIT = 100
# Where day prefixes live: raw data, and raw data moved to quarantine (same names under quarantine/).
DAY_ROOTS = (RAW_PREFIX, QUARANTINE_PREFIX + RAW_PREFIX)
# A copy within one account completes synchronously in practice; a pending one is polled this long.
COPY_TIMEOUT_SECONDS = 30.0
COPY_POLL_SECONDS = 0.25
# Bounded retries: with storage down, a request gets its 503 in seconds. The SDKs' defaults retry for
# about 85 s (blob: 15 s + 3^n backoff; tables: 10 retries), longer than agents and Event Grid wait.
STORAGE_RETRIES = 2  # 3 attempts
STORAGE_CONNECTION_TIMEOUT_SECONDS = 5
# Waiting for an answer once connected: a table entity is small; a blob answer may follow a 30 MB upload.
TABLE_READ_TIMEOUT_SECONDS = 10
BLOB_READ_TIMEOUT_SECONDS = 20
BLOB_RETRY_BACKOFF_SECONDS = 2  # before each retry (±0.5 s jitter)
TABLE_RETRY_BACKOFF_FACTOR = 0.5  # azure-core: retries at once, then after 1 s

log = logging.getLogger("sluice.storage")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """No Azure SDK error leaves an adapter: connection failures and 5xx/throttling become
    StorageUnavailable (the caller's 503); 404 and 409 not handled by the adapter itself become NotFound
    and Conflict; any other refusal (403: a missing role, 400) is StorageRejected."""
    try:
        yield
    except ResourceNotFoundError as error:
        raise NotFound(f"Not found while {what}.") from error
    except ResourceExistsError as error:
        raise Conflict(f"Already exists while {what}.") from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise StorageUnavailable(f"Storage is unreachable while {what}.") from error
    except AzureError as error:
        status = getattr(error, "status_code", None)
        if status is None or status >= 500 or status in (408, 429):
            raise StorageUnavailable(f"Storage failed while {what} (status {status}).") from error
        raise StorageRejected(f"Storage refused the request while {what} (status {status}).") from error


def credential_for(settings: StorageSettings) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.credential == "managedidentity":
        return ManagedIdentityCredential(client_id=settings.client_id)
    return DefaultAzureCredential(managed_identity_client_id=settings.client_id)


def blob_service(settings: StorageSettings) -> BlobServiceClient:
    options: dict[str, Any] = {
        "retry_policy": ExponentialRetry(  # waits initial_backoff + increment_base^n, so a fixed backoff
            initial_backoff=BLOB_RETRY_BACKOFF_SECONDS,
            increment_base=0,
            retry_total=STORAGE_RETRIES,
            random_jitter_range=0.5,  # type: ignore[arg-type]  # the SDK annotates int, computes in float
        ),
        "connection_timeout": STORAGE_CONNECTION_TIMEOUT_SECONDS,
        "read_timeout": BLOB_READ_TIMEOUT_SECONDS,
    }
    if settings.connection_string:
        return BlobServiceClient.from_connection_string(settings.connection_string, **options)
    assert settings.blob_service_uri is not None
    return BlobServiceClient(settings.blob_service_uri, credential=credential_for(settings), **options)


def table_service(settings: StorageSettings) -> TableServiceClient:
    options: dict[str, Any] = {
        "retry_total": STORAGE_RETRIES,
        "retry_backoff_factor": TABLE_RETRY_BACKOFF_FACTOR,
        "connection_timeout": STORAGE_CONNECTION_TIMEOUT_SECONDS,
        "read_timeout": TABLE_READ_TIMEOUT_SECONDS,
    }
    if settings.connection_string:
        return TableServiceClient.from_connection_string(settings.connection_string, **options)
    assert settings.table_service_uri is not None
    return TableServiceClient(settings.table_service_uri, credential=credential_for(settings), **options)


class BlobRawStore:
    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    def create_workspace_container(self, workspace_id: str) -> None:
        with translated("creating a workspace container"), suppress(ResourceExistsError):
            self._service.create_container(container_name(workspace_id))

    def list_workspace_containers(self) -> list[str]:
        with translated("listing workspace containers"):
            names = [c.name for c in self._service.list_containers(name_starts_with="ws-")]
        return [ws for ws in map(workspace_of_container, names) if ws is not None]

    def put_raw(self, workspace_id: str, blob_name: str, data: bytes, *, metadata: dict[str, str]) -> None:
        blob = self._service.get_blob_client(container_name(workspace_id), blob_name)
        settings = ContentSettings(content_type="application/json", content_encoding="gzip")
        with translated("writing a raw blob"):
            try:
                try:
                    blob.upload_blob(data, overwrite=False, metadata=metadata, content_settings=settings)
                except ResourceNotFoundError:
                    # The container is made at onboarding; recreate it if it went missing, retry once.
                    self.create_workspace_container(workspace_id)
                    blob.upload_blob(data, overwrite=False, metadata=metadata, content_settings=settings)
            except ResourceExistsError:
                # The name holds a fresh uuid4, so an existing blob is our own earlier attempt whose
                # answer was lost and that the SDK retried: committed, then, if its content matches.
                existing = blob.get_blob_properties().metadata or {}
                if existing.get("sha256") != metadata.get("sha256"):
                    raise BlobAlreadyExists(
                        f"{blob_name} already exists in workspace {workspace_id}"
                    ) from None

    def get_raw(self, workspace_id: str, blob_name: str) -> RawBlob:
        blob = self._service.get_blob_client(container_name(workspace_id), blob_name)
        with translated("reading a raw blob"):
            try:
                # decompress=False: the service stores gzip with Content-Encoding gzip; keep the bytes.
                downloader = blob.download_blob(decompress=False)
            except ResourceNotFoundError:
                raise BlobNotFound(f"{blob_name} does not exist in workspace {workspace_id}") from None
            data = downloader.readall()
        return RawBlob(
            data=data, metadata=dict(downloader.properties.metadata or {}), etag=downloader.properties.etag
        )

    def delete_workspace_container(self, workspace_id: str) -> None:
        """The container and everything in it; gone already, or still being deleted, is fine."""
        with translated("deleting a workspace container"):
            try:
                self._service.delete_container(container_name(workspace_id))
            except ResourceNotFoundError:
                return
            except ResourceExistsError as error:
                # The storage SDK sets error_code on the errors it raises; it is not in azure-core's type.
                if getattr(error, "error_code", None) != "ContainerBeingDeleted":
                    raise

    def list_raw_days(self, workspace_id: str, *, before: date | None = None) -> list[date]:
        container = self._service.get_container_client(container_name(workspace_id))
        days: set[date] = set()
        with translated("listing raw day prefixes"):
            try:
                for root in DAY_ROOTS:
                    days.update(self._days(container, root, before))
            except ResourceNotFoundError:
                return []
        return sorted(days)

    def list_raw_day_names(self, workspace_id: str, day: date) -> list[str]:
        container = self._service.get_container_client(container_name(workspace_id))
        with translated("listing a raw day's blobs"):
            try:
                return [blob.name for blob in self._day_blobs(container, day)]
            except ResourceNotFoundError:
                return []

    def delete_raw_day(self, workspace_id: str, day: date) -> DeletedBlobs:
        """Deletes as it lists, a batch at a time, so a day of any size needs one batch in memory
        (deleting what a page listed does not disturb the listing's continuation)."""
        container = self._service.get_container_client(container_name(workspace_id))
        blobs = size = 0
        with translated("deleting a raw day prefix"):
            try:
                listed = self._day_blobs(container, day)
                while batch := list(islice(listed, DELETE_BATCH)):
                    # By name: a BlobProperties would add If-Match, and a blob an overlapping run
                    # deleted first would answer 412 rather than the 404 that means "already gone".
                    responses = container.delete_blobs(
                        *(blob.name for blob in batch), delete_snapshots="include", raise_on_any_failure=False
                    )
                    for blob, response in zip(batch, responses, strict=True):
                        if response.status_code in (200, 202):
                            blobs += 1
                            size += blob.size
                        elif response.status_code != 404:  # already gone is success
                            raise StorageUnavailable(
                                f"Deleting a raw blob failed with status {response.status_code}."
                            )
            except ResourceNotFoundError:
                pass  # no container: nothing (more) to delete
        return DeletedBlobs(blobs=blobs, bytes=size)

    def quarantine_raw(self, workspace_id: str, blob_name: str, *, reason: str, detail: str) -> None:
        """A server-side copy to `quarantine/{name}` (the bytes never pass through here), then the
        original's deletion, both conditional on the ETag read first: only what was copied is deleted."""
        container = container_name(workspace_id)
        source = self._service.get_blob_client(container, blob_name)
        target = self._service.get_blob_client(container, quarantine_name(blob_name))
        with translated("quarantining a raw blob"):
            try:
                properties = source.get_blob_properties()
                metadata = quarantine_metadata(
                    properties.metadata or {}, reason=reason, detail=detail, at=datetime.now(UTC)
                )
                copy = target.start_copy_from_url(
                    source.url,
                    metadata=metadata,
                    source_etag=properties.etag,
                    source_match_condition=MatchConditions.IfNotModified,
                )
            except ResourceNotFoundError:
                if target.exists():  # an earlier (or concurrent) delivery moved it already
                    return
                raise BlobNotFound(f"{blob_name} does not exist in workspace {workspace_id}") from None
            self._await_copy(target, copy)
            with suppress(ResourceNotFoundError):  # already deleted by a concurrent delivery
                source.delete_blob(
                    delete_snapshots="include",
                    etag=properties.etag,
                    match_condition=MatchConditions.IfNotModified,
                )

    @staticmethod
    def _await_copy(target: BlobClient, copy: dict[str, Any]) -> None:
        status, copy_id = copy.get("copy_status"), str(copy.get("copy_id") or "")
        deadline = time.monotonic() + COPY_TIMEOUT_SECONDS
        while status == "pending":
            if time.monotonic() > deadline:
                with suppress(AzureError):  # leaves an empty copy that the next delivery overwrites
                    target.abort_copy(copy_id)
                raise StorageUnavailable(
                    f"The quarantine copy {target.blob_name} did not finish in {COPY_TIMEOUT_SECONDS:.0f} s."
                )
            time.sleep(COPY_POLL_SECONDS)
            status = target.get_blob_properties().copy.status
        if status != "success":
            raise StorageUnavailable(f"The quarantine copy {target.blob_name} ended {status}.")

    @staticmethod
    def _day_blobs(container: Any, day: date) -> Iterator[BlobProperties]:
        for root in DAY_ROOTS:
            yield from container.list_blobs(name_starts_with=root + day_prefix(day).removeprefix(RAW_PREFIX))

    @classmethod
    def _days(cls, container: Any, root: str, before: date | None) -> Iterator[date]:
        """Year, then month, then day prefixes under `root`. The service lists names in lexicographic
        order, which for these fixed-width numbers is chronological: with `before`, each level stops
        at its first prefix past the bound's, so only the years up to the bound's are listed, months
        only of those years, days only of the months up to the bound's."""
        last_year: str | None = None
        last_month: str | None = None
        first_kept: str | None = None
        if before is not None:
            last_year, last_month = f"{root}{before:%Y}/", f"{root}{before:%Y/%m}/"
            first_kept = f"{root}{before:%Y/%m/%d}/"
        for year in cls._prefixes(container, root):
            if last_year is not None and year > last_year:
                return
            for month in cls._prefixes(container, year):
                if last_month is not None and month > last_month:
                    break
                for day in cls._prefixes(container, month):
                    if first_kept is not None and day >= first_kept:
                        break
                    parsed = parse_day_prefix(day.removeprefix(QUARANTINE_PREFIX))
                    if parsed is not None:
                        yield parsed

    @staticmethod
    def _prefixes(container: Any, prefix: str) -> Iterator[str]:
        """The `/`-ended prefixes right under `prefix`, lazily: a caller that stops early lists no
        further page."""
        for item in container.walk_blobs(name_starts_with=prefix, delimiter="/"):
            if item.name.endswith("/"):
                yield item.name


class LazyTable:
    """A table created on first write; reads of a table that does not exist yet see it empty."""

    def __init__(self, service: TableServiceClient, name: str) -> None:
        self._service = service
        self.name = name
        self.client = service.get_table_client(name)
        self._ready = False

    def ensure(self) -> None:
        if not self._ready:
            with translated(f"creating the {self.name} table"):
                self._service.create_table_if_not_exists(self.name)
            self._ready = True

    def create(self, entity: dict[str, Any], *, what: str) -> None:
        self.ensure()
        with translated(what):
            self.client.create_entity(entity)

    def delete_partition(self, partition_key: str, *, what: str) -> int:
        """Deletes every entity of the partition; see delete_matching."""
        return self.delete_matching(partition_key, what=what)

    def delete_matching(
        self, partition_key: str, *, where: str = "", parameters: dict[str, Any] | None = None, what: str
    ) -> int:
        """Deletes the partition's entities that match `where` (a filter over @-parameters, or all) as
        the query pages, in transactions of up to TABLE_TRANSACTION_LIMIT. A transaction fails whole on
        an entity an overlapping run deleted first; its entities are then deleted one at a time, where
        one already gone counts as done. Returns how many were listed for deletion; none, or no table
        yet, is fine."""
        deleted = 0
        with translated(what):
            row_keys = self._matching_row_keys(partition_key, where, parameters)
            while chosen := list(islice(row_keys, TABLE_TRANSACTION_LIMIT)):
                self._delete_together(partition_key, chosen)
                deleted += len(chosen)
        return deleted

    def _delete_together(self, partition_key: str, row_keys: list[str]) -> None:
        try:
            self.client.submit_transaction(
                [("delete", {"PartitionKey": partition_key, "RowKey": row_key}) for row_key in row_keys]
            )
        except TableTransactionError as error:
            if error.status_code != HTTPStatus.NOT_FOUND:
                raise
            for row_key in row_keys:
                self.client.delete_entity(partition_key=partition_key, row_key=row_key)

    def count_matching(
        self, partition_key: str, *, where: str = "", parameters: dict[str, Any] | None = None, what: str
    ) -> int:
        """How many of the partition's entities match `where`; 0 when there is no table yet."""
        with translated(what):
            return sum(1 for _ in self._matching_row_keys(partition_key, where, parameters))

    def _matching_row_keys(
        self, partition_key: str, where: str, parameters: dict[str, Any] | None
    ) -> Iterator[str]:
        try:
            for entity in self.client.query_entities(
                "PartitionKey eq @pk" + (f" and {where}" if where else ""),
                parameters={"pk": partition_key, **(parameters or {})},
                select=["RowKey"],
            ):
                yield entity["RowKey"]
        except ResourceNotFoundError:
            return  # no table yet

    def replace_existing(self, entity: dict[str, Any], *, what: str) -> bool:
        """Replaces the entity whatever its version (If-Match: *); False when it does not exist."""
        with translated(what):
            try:
                self.client.update_entity(
                    entity, mode=UpdateMode.REPLACE, match_condition=MatchConditions.Unconditionally
                )
            except ResourceNotFoundError:
                return False
        return True


class TableWorkspaceRegistry:
    """One entity per workspace, PartitionKey = workspace id, so lookups are point reads. A workspace's
    version is its entity's ETag; updates and deletes are conditional on it (If-Match)."""

    def __init__(self, service: TableServiceClient, *, table_name: str = WORKSPACES_TABLE) -> None:
        self._table = LazyTable(service, table_name)

    def get_workspace(self, workspace_id: str) -> Workspace:
        with translated("reading the workspace registry"):
            try:
                entity = self._table.client.get_entity(partition_key=workspace_id, row_key=WORKSPACE_ROW_KEY)
            except ResourceNotFoundError:
                raise WorkspaceNotFound(f"Workspace {workspace_id} does not exist.") from None
        return _workspace(entity)

    def list_workspaces(self) -> list[Workspace]:
        with translated("listing the workspace registry"):
            try:
                entities = list(self._table.client.query_entities(f"RowKey eq '{WORKSPACE_ROW_KEY}'"))
            except ResourceNotFoundError:
                return []
        return sorted(map(_workspace, entities), key=lambda w: w.created_at)

    def create_workspace(self, workspace: Workspace) -> Workspace:
        self._table.ensure()
        with translated("registering a workspace"):
            written = self._table.client.create_entity(_entity(workspace))
        return replace(workspace, version=written["etag"])

    def update_workspace(self, workspace: Workspace) -> Workspace:
        with translated("updating the workspace registry"):
            try:
                written = self._table.client.update_entity(
                    _entity(workspace),
                    mode=UpdateMode.REPLACE,
                    etag=stored_version(workspace),
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceNotFoundError:
                raise WorkspaceNotFound(f"Workspace {workspace.workspace_id} does not exist.") from None
            except ResourceModifiedError:
                raise workspace_changed(workspace.workspace_id) from None
        return replace(workspace, version=written["etag"])

    def delete_workspace(self, workspace: Workspace) -> None:
        """Gone already (404) is success: the SDK's delete_entity returns quietly on it."""
        with translated("removing a workspace from the registry"):
            try:
                self._table.client.delete_entity(
                    partition_key=workspace.workspace_id,
                    row_key=WORKSPACE_ROW_KEY,
                    etag=stored_version(workspace),
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                raise workspace_changed(workspace.workspace_id) from None


def _entity(workspace: Workspace) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": workspace.workspace_id,
        "RowKey": WORKSPACE_ROW_KEY,
        "plan": workspace.plan.value,
        "state": workspace.state.value,
        "created_at": workspace.created_at,
    }
    if workspace.deleted_at is not None:
        entity["deleted_at"] = workspace.deleted_at
    if workspace.removal_started_at is not None:
        entity["removal_started_at"] = workspace.removal_started_at
    return entity


def _workspace(entity: Any) -> Workspace:
    return Workspace(
        workspace_id=entity["PartitionKey"],
        plan=Plan(entity["plan"]),
        state=WorkspaceState(entity["state"]),
        created_at=entity["created_at"],
        deleted_at=entity.get("deleted_at"),
        removal_started_at=entity.get("removal_started_at"),
        version=entity.metadata["etag"],
    )


class TableAgentRegistry:
    """PartitionKey = workspace id, RowKey = certificate thumbprint: authentication is a point read
    scoped to the workspace the request names."""

    def __init__(self, service: TableServiceClient, *, table_name: str = AGENTS_TABLE) -> None:
        self._table = LazyTable(service, table_name)

    def get_agent(self, workspace_id: str, thumbprint: str) -> Agent:
        with translated("reading the agent registry"):
            try:
                entity = self._table.client.get_entity(partition_key=workspace_id, row_key=thumbprint)
            except ResourceNotFoundError:
                raise AgentNotFound(f"No agent with that certificate in workspace {workspace_id}.") from None
        return _agent(entity)

    def list_agents(self, workspace_id: str) -> list[Agent]:
        with translated("listing the agent registry"):
            try:
                entities = list(
                    self._table.client.query_entities("PartitionKey eq @ws", parameters={"ws": workspace_id})
                )
            except ResourceNotFoundError:
                return []
        return sorted(map(_agent, entities), key=lambda a: a.registered_at)

    def create_agent(self, agent: Agent) -> None:
        self._table.create(_agent_entity(agent), what="registering an agent")

    def update_agent(self, agent: Agent) -> None:
        if not self._table.replace_existing(_agent_entity(agent), what="updating the agent registry"):
            raise AgentNotFound(f"Agent {agent.agent_id} does not exist.")

    def delete_workspace_agents(self, workspace_id: str) -> int:
        return self._table.delete_partition(workspace_id, what="removing a workspace's agents")


def _agent_entity(agent: Agent) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": agent.workspace_id,
        "RowKey": agent.thumbprint,
        "agent_id": agent.agent_id,
        "certificate": agent.certificate_pem,
        "not_before": agent.not_before,
        "not_after": agent.not_after,
        "state": agent.state.value,
        "registered_at": agent.registered_at,
    }
    if agent.revoked_at is not None:
        entity["revoked_at"] = agent.revoked_at
    return entity


def _agent(entity: Any) -> Agent:
    return Agent(
        workspace_id=entity["PartitionKey"],
        agent_id=entity["agent_id"],
        thumbprint=entity["RowKey"],
        certificate_pem=entity["certificate"],
        not_before=entity["not_before"],
        not_after=entity["not_after"],
        state=AgentState(entity["state"]),
        registered_at=entity["registered_at"],
        revoked_at=entity.get("revoked_at"),
    )


class TableReplayGuard:
    """Client-assertion ids, one entity each, PartitionKey = workspace id: inserting an id that exists is
    the replay."""

    def __init__(self, service: TableServiceClient, *, table_name: str = ASSERTION_IDS_TABLE) -> None:
        self._table = LazyTable(service, table_name)

    def claim_once(self, workspace_id: str, token_id: str, *, expires_at: datetime) -> bool:
        self._table.ensure()
        with translated("recording a client assertion id"):
            try:
                self._table.client.create_entity(
                    {"PartitionKey": workspace_id, "RowKey": token_id, "expires_at": expires_at}
                )
            except ResourceExistsError:
                return False
        return True

    def delete_assertion_ids_expired_before(self, workspace_id: str, *, before: datetime) -> int:
        return self._table.delete_matching(
            workspace_id, what="purging expired client assertion ids", **self._expired_before(before)
        )

    def count_assertion_ids_expired_before(self, workspace_id: str, *, before: datetime) -> int:
        return self._table.count_matching(
            workspace_id, what="counting expired client assertion ids", **self._expired_before(before)
        )

    @staticmethod
    def _expired_before(before: datetime) -> dict[str, Any]:
        return {"where": "expires_at lt @before", "parameters": {"before": before}}

    def delete_workspace_assertion_ids(self, workspace_id: str) -> int:
        return self._table.delete_partition(workspace_id, what="removing a workspace's client assertion ids")
