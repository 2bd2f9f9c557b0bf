"""The Azure Storage adapters against Azurite: BlobRawStore (one container per workspace, raw blobs
by day prefix) and TableWorkspaceRegistry."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devhost.azurite import AzuritePorts, free_port
from shared.azure_storage import BlobRawStore, TableWorkspaceRegistry
from shared.errors import BlobAlreadyExists, BlobNotFound, StorageUnavailable, WorkspaceNotFound
from shared.plans import Plan
from shared.workspaces import Workspace, WorkspaceState
from tests.support.storage import blob_service, container_blob_names, gz, raw_name

pytestmark = pytest.mark.integration

DAY = date(2024, 2, 28)


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def service(azurite_connection_string: str) -> BlobServiceClient:
    return blob_service(azurite_connection_string)


@pytest.fixture
def store(service: BlobServiceClient) -> BlobRawStore:
    return BlobRawStore(service)


@pytest.fixture
def workspace_id(store: BlobRawStore, service: BlobServiceClient) -> Iterator[str]:
    workspace = new_id()
    store.create_workspace_container(workspace)
    yield workspace
    service.delete_container(f"ws-{workspace}")


def metadata_for(workspace_id: str, data: bytes) -> dict[str, str]:
    """Ingest's metadata for the stored bytes `data`."""
    return {
        "workspace_id": workspace_id,
        "log_type": "Test_CL",
        "record_count": "1",
        "sha256": hashlib.sha256(data).hexdigest(),
        "received_at": datetime.now(UTC).isoformat(),
    }


def put(store: BlobRawStore, workspace_id: str, name: str, body: bytes = b'{"a":1}') -> None:
    data = gz(body)
    store.put_raw(workspace_id, name, data, metadata=metadata_for(workspace_id, data))


# -- put / get -----------------------------------------------------------------------------------------


def test_given_a_raw_blob_when_put_and_read_back_then_bytes_metadata_and_etag_round_trip(
    store: BlobRawStore, service: BlobServiceClient, workspace_id: str
) -> None:
    body = b'[{"Computer":"web-1","v":1},{"Computer":"web-2","v":2}]'
    data = gz(body)
    metadata = metadata_for(workspace_id, data)
    name = raw_name(DAY, hour=13)

    store.put_raw(workspace_id, name, data, metadata=metadata)
    blob = store.get_raw(workspace_id, name)

    assert blob.data == data
    assert blob.metadata == metadata
    properties = service.get_blob_client(f"ws-{workspace_id}", name).get_blob_properties()
    assert blob.etag == properties.etag
    assert blob.etag
    assert properties.content_settings.content_type == "application/json"
    assert properties.content_settings.content_encoding == "gzip"


def test_given_an_existing_blob_when_put_again_under_the_same_name_then_refused_and_original_kept(
    store: BlobRawStore, workspace_id: str
) -> None:
    name = raw_name(DAY)
    put(store, workspace_id, name, b'{"first":true}')
    original = store.get_raw(workspace_id, name)

    with pytest.raises(BlobAlreadyExists):
        put(store, workspace_id, name, b'{"second":true}')

    assert store.get_raw(workspace_id, name) == original


def test_given_a_missing_blob_when_read_then_blob_not_found(store: BlobRawStore, workspace_id: str) -> None:
    with pytest.raises(BlobNotFound):
        store.get_raw(workspace_id, raw_name(DAY))


def test_given_a_workspace_without_container_when_read_then_blob_not_found(store: BlobRawStore) -> None:
    with pytest.raises(BlobNotFound):
        store.get_raw(new_id(), raw_name(DAY))


def test_given_the_container_went_missing_when_putting_then_it_is_recreated_and_the_blob_stored(
    store: BlobRawStore, service: BlobServiceClient
) -> None:
    workspace = new_id()
    name = raw_name(DAY)
    try:
        put(store, workspace, name, b'{"late":1}')

        assert container_blob_names(service, workspace) == [name]
    finally:
        service.delete_container(f"ws-{workspace}")


def test_given_two_workspaces_when_one_writes_then_the_other_s_container_does_not_see_it(
    store: BlobRawStore, service: BlobServiceClient, workspace_id: str
) -> None:
    other = new_id()
    store.create_workspace_container(other)
    name = raw_name(DAY)
    try:
        put(store, workspace_id, name)

        with pytest.raises(BlobNotFound):
            store.get_raw(other, name)
        assert store.list_raw_days(other) == []
        assert container_blob_names(service, other) == []
        assert other in store.list_workspace_containers()
        assert workspace_id in store.list_workspace_containers()
    finally:
        service.delete_container(f"ws-{other}")


def test_given_containers_that_are_not_workspaces_when_listing_workspaces_then_they_are_left_out(
    store: BlobRawStore, service: BlobServiceClient
) -> None:
    stray = f"ws-not-a-guid-{uuid.uuid4().hex[:8]}"
    service.create_container(stray)
    try:
        listed = store.list_workspace_containers()

        assert all(uuid.UUID(workspace) for workspace in listed)
        assert stray.removeprefix("ws-") not in listed
    finally:
        service.delete_container(stray)


def test_given_creating_an_existing_container_when_onboarding_again_then_it_is_harmless(
    store: BlobRawStore, workspace_id: str
) -> None:
    put(store, workspace_id, raw_name(DAY))

    store.create_workspace_container(workspace_id)

    assert store.list_raw_days(workspace_id) == [DAY]


# -- day prefixes ----------------------------------------------------------------------------------


def test_given_blobs_on_several_days_when_listing_days_then_only_raw_day_prefixes_are_listed(
    store: BlobRawStore, service: BlobServiceClient, workspace_id: str
) -> None:
    days = [date(2023, 12, 31), date(2024, 1, 1), date(2024, 1, 2), date(2024, 2, 29)]
    for day in days:
        put(store, workspace_id, raw_name(day, hour=0))
        put(store, workspace_id, raw_name(day, hour=23))
    container = service.get_container_client(f"ws-{workspace_id}")
    for stray in ("other/2024/01/03/00/X/a.json.gz", "raw/2024/13/01/00/X/b.json.gz", "raw/readme.txt"):
        container.upload_blob(stray, b"x")

    listed = store.list_raw_days(workspace_id)

    assert sorted(listed) == days


def test_given_a_workspace_without_container_when_listing_days_then_empty(store: BlobRawStore) -> None:
    assert store.list_raw_days(new_id()) == []


def test_given_blobs_on_three_days_when_deleting_one_day_then_only_that_day_goes_and_count_is_returned(
    store: BlobRawStore, service: BlobServiceClient, workspace_id: str
) -> None:
    before, target, after = DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)
    kept = [raw_name(before, hour=23), raw_name(after, hour=0)]
    doomed = [raw_name(target, hour=h, log_type=t) for h in (0, 12, 23) for t in ("A_CL", "B_CL")]
    for name in kept + doomed:
        put(store, workspace_id, name)

    deleted = store.delete_raw_day(workspace_id, target)

    assert deleted.blobs == len(doomed)
    assert container_blob_names(service, workspace_id) == sorted(kept)
    assert sorted(store.list_raw_days(workspace_id)) == [before, after]


def test_given_a_day_already_deleted_when_deleting_it_again_then_zero(
    store: BlobRawStore, workspace_id: str
) -> None:
    put(store, workspace_id, raw_name(DAY))
    assert store.delete_raw_day(workspace_id, DAY).blobs == 1

    assert store.delete_raw_day(workspace_id, DAY).blobs == 0
    assert store.delete_raw_day(new_id(), DAY).blobs == 0  # no container at all


def test_given_more_blobs_than_one_batch_when_deleting_a_day_then_all_are_deleted(
    store: BlobRawStore, service: BlobServiceClient, workspace_id: str
) -> None:
    container = service.get_container_client(f"ws-{workspace_id}")
    names = [raw_name(DAY, hour=i % 24) for i in range(260)]  # more than one 256-blob batch
    for name in names:
        container.upload_blob(name, b"x")

    assert store.delete_raw_day(workspace_id, DAY).blobs == len(names)
    assert container_blob_names(service, workspace_id) == []


def test_given_a_day_with_an_adjacent_prefix_when_deleting_then_the_neighbour_day_is_kept(
    store: BlobRawStore, service: BlobServiceClient, workspace_id: str
) -> None:
    # raw/2024/01/1/ is not raw/2024/01/10/: prefixes end with a slash.
    day_1, day_10 = date(2024, 1, 1), date(2024, 1, 10)
    put(store, workspace_id, raw_name(day_1))
    put(store, workspace_id, raw_name(day_10))

    assert store.delete_raw_day(workspace_id, day_1).blobs == 1
    assert store.list_raw_days(workspace_id) == [day_10]


# -- storage down ------------------------------------------------------------------------------------


@pytest.fixture
def unreachable_store() -> BlobRawStore:
    ports = AzuritePorts(blob=free_port(), queue=free_port(), table=free_port())  # nothing listens
    return BlobRawStore(blob_service(ports.connection_string, retry_total=0, connection_timeout=2))


def test_given_storage_is_unreachable_when_putting_then_storage_unavailable(
    unreachable_store: BlobRawStore,
) -> None:
    workspace = new_id()
    with pytest.raises(StorageUnavailable) as raised:
        put(unreachable_store, workspace, raw_name(DAY))
    assert raised.value.retry_after_seconds


@pytest.mark.parametrize("operation", ["get_raw", "list_raw_days", "delete_raw_day", "create_container"])
def test_given_storage_is_unreachable_when_reading_listing_or_deleting_then_storage_unavailable(
    unreachable_store: BlobRawStore, operation: str
) -> None:
    workspace = new_id()
    calls: dict[str, Callable[[], object]] = {
        "get_raw": lambda: unreachable_store.get_raw(workspace, raw_name(DAY)),
        "list_raw_days": lambda: unreachable_store.list_raw_days(workspace),
        "delete_raw_day": lambda: unreachable_store.delete_raw_day(workspace, DAY),
        "create_container": lambda: unreachable_store.create_workspace_container(workspace),
    }
    with pytest.raises(StorageUnavailable):
        calls[operation]()


# -- the workspace registry --------------------------------------------------------------------------


@pytest.fixture
def registry(azurite_connection_string: str) -> TableWorkspaceRegistry:
    return TableWorkspaceRegistry(TableServiceClient.from_connection_string(azurite_connection_string))


def workspace(plan: Plan = Plan.STANDARD, *, state: WorkspaceState = WorkspaceState.ACTIVE) -> Workspace:
    return Workspace(
        workspace_id=new_id(),
        plan=plan,
        state=state,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )


def test_given_a_registered_workspace_when_read_back_then_every_field_round_trips(
    registry: TableWorkspaceRegistry,
) -> None:
    created = workspace(Plan.FREE, state=WorkspaceState.DISABLED)

    registry.create_workspace(created)

    assert registry.get_workspace(created.workspace_id) == created


def test_given_several_workspaces_when_listed_then_all_are_there_oldest_first(
    registry: TableWorkspaceRegistry,
) -> None:
    base = datetime(2020, 1, 1, tzinfo=UTC)
    created = [
        Workspace(
            workspace_id=new_id(), plan=plan, state=WorkspaceState.ACTIVE, created_at=base + timedelta(i)
        )
        for i, plan in enumerate(Plan)
    ]
    for item in reversed(created):
        registry.create_workspace(item)

    listed = registry.list_workspaces()

    ours = [w for w in listed if w.workspace_id in {c.workspace_id for c in created}]
    assert ours == created
    assert [w.created_at for w in listed] == sorted(w.created_at for w in listed)


def test_given_an_unknown_workspace_when_read_then_workspace_not_found(
    registry: TableWorkspaceRegistry,
) -> None:
    registry.create_workspace(workspace())  # the table exists; the id does not

    with pytest.raises(WorkspaceNotFound):
        registry.get_workspace(new_id())


def test_given_a_workspace_when_plan_changed_and_deleted_then_updates_round_trip(
    registry: TableWorkspaceRegistry,
) -> None:
    created = registry.create_workspace(workspace(Plan.FREE))
    deleted_at = datetime.now(UTC).replace(microsecond=0)

    changed = replace(created, plan=Plan.PREMIUM, state=WorkspaceState.DELETED, deleted_at=deleted_at)
    registry.update_workspace(changed)

    assert registry.get_workspace(created.workspace_id) == changed


def test_given_an_unknown_workspace_when_updated_then_not_found_and_nothing_created(
    registry: TableWorkspaceRegistry,
) -> None:
    ghost = registry.create_workspace(workspace())  # read once, with a version, then gone
    registry.delete_workspace(ghost)

    with pytest.raises(WorkspaceNotFound):
        registry.update_workspace(ghost)
    with pytest.raises(WorkspaceNotFound):
        registry.get_workspace(ghost.workspace_id)


def test_given_a_registry_whose_table_does_not_exist_when_read_then_not_found_and_empty(
    azurite_connection_string: str,
) -> None:
    service = TableServiceClient.from_connection_string(azurite_connection_string)
    fresh = TableWorkspaceRegistry(service, table_name=f"t{uuid.uuid4().hex}")

    with pytest.raises(WorkspaceNotFound):
        fresh.get_workspace(new_id())
    assert fresh.list_workspaces() == []


def test_given_the_table_is_unreachable_when_reading_the_registry_then_storage_unavailable() -> None:
    ports = AzuritePorts(blob=free_port(), queue=free_port(), table=free_port())
    unreachable = TableWorkspaceRegistry(
        TableServiceClient.from_connection_string(
            ports.connection_string, retry_total=0, connection_timeout=2
        )
    )

    with pytest.raises(StorageUnavailable):
        unreachable.get_workspace(new_id())
