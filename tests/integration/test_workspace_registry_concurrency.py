"""Optimistic concurrency of the workspace registry: TableWorkspaceRegistry on Azurite (a workspace's
version is its entity's ETag; writers racing with the same version end with exactly one winner), and
the contract's sequential cases on the in-memory registry the unit tests use as well, so the two agree."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient

from shared.azure_storage import TableWorkspaceRegistry
from shared.errors import WorkspaceChanged, WorkspaceNotFound
from shared.plans import Plan
from shared.workspaces import Workspace, WorkspaceRegistry, WorkspaceState, mark_deleted, start_removal
from tests.support.concurrency import run_together
from tests.unit.fakes import MemoryRegistry

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
WRITERS = 4


@pytest.fixture
def table_registry(azurite_connection_string: str) -> TableWorkspaceRegistry:
    return TableWorkspaceRegistry(TableServiceClient.from_connection_string(azurite_connection_string))


@pytest.fixture(params=["table", "memory"])
def registry(request: pytest.FixtureRequest) -> WorkspaceRegistry:
    if request.param == "memory":
        return MemoryRegistry()
    table: TableWorkspaceRegistry = request.getfixturevalue("table_registry")
    return table


def stored(registry: WorkspaceRegistry) -> Workspace:
    return registry.create_workspace(
        Workspace(str(uuid.uuid4()), Plan.FREE, WorkspaceState.ACTIVE, created_at=NOW)
    )


def test_given_a_workspace_when_created_updated_and_read_then_each_carries_the_entity_s_etag(
    registry: WorkspaceRegistry,
) -> None:
    created = stored(registry)
    claimed = registry.update_workspace(start_removal(mark_deleted(created, now=NOW), now=NOW))

    read = registry.get_workspace(created.workspace_id)

    assert created.version is not None and claimed.version not in (None, created.version)
    assert read == claimed and read.version == claimed.version
    assert (read.state, read.deleted_at, read.removal_started_at) == (WorkspaceState.DELETED, NOW, NOW)
    assert [w.version for w in registry.list_workspaces() if w.workspace_id == read.workspace_id] == [
        read.version
    ]


def test_given_writers_racing_with_the_same_version_then_exactly_one_wins_and_the_others_are_refused(
    table_registry: TableWorkspaceRegistry,
) -> None:
    registry = table_registry
    read = stored(registry)
    plans = [Plan.STANDARD, Plan.PREMIUM, Plan.STANDARD, Plan.PREMIUM]

    def write(index: int) -> Workspace | WorkspaceChanged:
        try:
            return registry.update_workspace(replace(read, plan=plans[index]))
        except WorkspaceChanged as error:
            return error

    outcomes = run_together(WRITERS, write)

    [winner] = [o for o in outcomes if isinstance(o, Workspace)]
    assert sum(isinstance(o, WorkspaceChanged) for o in outcomes) == WRITERS - 1
    assert registry.get_workspace(read.workspace_id).version == winner.version


def test_given_an_update_racing_a_delete_of_the_same_version_then_exactly_one_lands(
    table_registry: TableWorkspaceRegistry,
) -> None:
    registry = table_registry
    read = stored(registry)

    def act(index: int) -> str:
        try:
            if index == 0:
                registry.update_workspace(replace(read, plan=Plan.PREMIUM))
                return "updated"
            registry.delete_workspace(read)
            return "deleted"
        except (WorkspaceChanged, WorkspaceNotFound) as error:
            return error.code

    outcomes = sorted(run_together(2, act))

    assert outcomes in (["WorkspaceChanged", "updated"], ["WorkspaceNotFound", "deleted"])
    if "updated" in outcomes:
        assert registry.get_workspace(read.workspace_id).plan is Plan.PREMIUM
    else:
        with pytest.raises(WorkspaceNotFound):
            registry.get_workspace(read.workspace_id)


def test_given_a_stale_version_when_deleting_then_refused_and_once_gone_deleting_again_succeeds(
    registry: WorkspaceRegistry,
) -> None:
    read = stored(registry)
    current = registry.update_workspace(replace(read, plan=Plan.PREMIUM))

    with pytest.raises(WorkspaceChanged):
        registry.delete_workspace(read)
    registry.delete_workspace(current)
    registry.delete_workspace(current)

    with pytest.raises(WorkspaceNotFound):
        registry.get_workspace(read.workspace_id)
    with pytest.raises(WorkspaceNotFound):
        registry.update_workspace(current)


def test_given_a_workspace_not_read_from_the_registry_when_written_then_value_error(
    registry: WorkspaceRegistry,
) -> None:
    read = stored(registry)

    with pytest.raises(ValueError, match="not read from the registry"):
        registry.update_workspace(replace(read, version=None))
    with pytest.raises(ValueError, match="not read from the registry"):
        registry.delete_workspace(replace(read, version=None))
    assert registry.get_workspace(read.workspace_id).version == read.version
