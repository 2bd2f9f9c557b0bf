"""Optimistic concurrency on the workspace registry, on the in-memory registry: writes are conditional
on the version read, and the operators' read-modify-write re-applies its change once after losing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.cli.workspaces import change_workspace
from shared.errors import Conflict, WorkspaceChanged, WorkspaceNotFound, http_status
from shared.plans import Plan
from shared.workspaces import Workspace, WorkspaceState, change_plan, mark_deleted, restore_deleted
from tests.unit.fakes import MemoryRegistry

NOW = datetime(2026, 11, 22, 2, tzinfo=UTC)
GRACE = timedelta(days=14)


def stored(registry: MemoryRegistry) -> Workspace:
    return registry.create_workspace(
        Workspace(str(uuid.uuid4()), Plan.FREE, WorkspaceState.ACTIVE, created_at=NOW)
    )


def test_given_two_writers_with_the_same_version_when_both_update_then_the_second_is_refused() -> None:
    registry = MemoryRegistry()
    read = stored(registry)

    registry.update_workspace(replace(read, plan=Plan.PREMIUM))
    with pytest.raises(WorkspaceChanged) as refused:
        registry.update_workspace(replace(read, plan=Plan.STANDARD))

    assert registry.get_workspace(read.workspace_id).plan is Plan.PREMIUM
    assert (refused.value.code, http_status(refused.value)) == ("WorkspaceChanged", 409)
    assert isinstance(refused.value, Conflict) and "read it again and retry" in refused.value.message


def test_given_a_workspace_never_read_when_written_then_value_error_and_unknown_is_not_found() -> None:
    registry = MemoryRegistry()
    read = stored(registry)

    with pytest.raises(ValueError, match="not read from the registry"):
        registry.update_workspace(replace(read, version=None))
    with pytest.raises(WorkspaceNotFound):
        registry.update_workspace(replace(read, workspace_id=str(uuid.uuid4())))


def test_given_versions_then_workspaces_compare_by_content_alone() -> None:
    registry = MemoryRegistry()
    read = stored(registry)

    rewritten = registry.update_workspace(read)

    assert rewritten == read and rewritten.version != read.version


class RacingRegistry(MemoryRegistry):
    """Another operator's write lands right after each of the next `races` reads."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    def get_workspace(self, workspace_id: str) -> Workspace:
        read = super().get_workspace(workspace_id)
        if self.races:
            self.races -= 1
            super().update_workspace(replace(read, plan=Plan.STANDARD))
        return read


def test_given_one_concurrent_write_when_changing_then_the_change_is_reapplied_to_a_fresh_read() -> None:
    registry = RacingRegistry(races=0)
    workspace_id = stored(registry).workspace_id
    registry.races = 1

    previous, changed = change_workspace(registry, workspace_id, lambda read: mark_deleted(read, now=NOW))

    assert (previous.plan, previous.state) == (
        Plan.FREE,
        WorkspaceState.ACTIVE,
    )  # as the command first read it
    assert (changed.plan, changed.state) == (
        Plan.STANDARD,
        WorkspaceState.DELETED,
    )  # on top of the other write
    assert registry.get_workspace(workspace_id) == changed


def test_given_writes_racing_every_read_when_changing_then_workspace_changed_is_reported() -> None:
    registry = RacingRegistry(races=0)
    workspace_id = stored(registry).workspace_id
    registry.races = 2

    with pytest.raises(WorkspaceChanged):
        change_workspace(registry, workspace_id, lambda read: replace(read, plan=Plan.PREMIUM))

    assert registry.get_workspace(workspace_id).plan is Plan.STANDARD


def test_given_a_restore_whose_fresh_read_shows_a_claimed_removal_then_it_is_refused() -> None:
    registry = MemoryRegistry()
    deleted = registry.update_workspace(mark_deleted(stored(registry), now=NOW))
    registry.update_workspace(replace(deleted, removal_started_at=NOW + GRACE))

    with pytest.raises(ValueError, match="is being removed"):
        change_workspace(
            registry, deleted.workspace_id, lambda read: restore_deleted(read, now=NOW, grace=GRACE)
        )


def test_given_no_change_when_changing_then_nothing_is_written() -> None:
    registry = MemoryRegistry()
    deleted = registry.update_workspace(mark_deleted(stored(registry), now=NOW))

    previous, changed = change_workspace(
        registry, deleted.workspace_id, lambda read: mark_deleted(read, now=NOW + GRACE)
    )

    assert changed is previous and changed.version == deleted.version


class LostAnswerRegistry(MemoryRegistry):
    """The next update is stored, but its answer is lost and the SDK's retry finds the entry changed
    (412): the caller sees WorkspaceChanged for a write that landed."""

    lose_next = True

    def update_workspace(self, workspace: Workspace) -> Workspace:
        written = super().update_workspace(workspace)
        if self.lose_next:
            self.lose_next = False
            raise WorkspaceChanged("412 on the retry of a write that had landed")
        return written


@pytest.mark.parametrize(
    "change",
    [
        lambda read: mark_deleted(read, now=NOW),
        lambda read: change_plan(read, Plan.PREMIUM),
    ],
    ids=["delete", "set-plan"],
)
def test_given_a_write_whose_answer_was_lost_when_changing_then_it_stands_once(
    change: Callable[[Workspace], Workspace],
) -> None:
    registry = LostAnswerRegistry()
    read = stored(registry)

    previous, changed = change_workspace(registry, read.workspace_id, change)

    assert previous == read and changed == change(read)  # the first read, for the audit entry
    assert registry.get_workspace(read.workspace_id) == changed


def test_given_a_restore_whose_answer_was_lost_then_it_stands_instead_of_not_deleted() -> None:
    registry = LostAnswerRegistry()
    registry.lose_next = False
    deleted = registry.update_workspace(mark_deleted(stored(registry), now=NOW))
    registry.lose_next = True

    previous, restored = change_workspace(
        registry, deleted.workspace_id, lambda read: restore_deleted(read, now=NOW, grace=GRACE)
    )

    assert previous.state is WorkspaceState.DELETED and restored.state is WorkspaceState.ACTIVE


def test_given_a_claimed_removal_when_changing_the_plan_then_refused() -> None:
    registry = MemoryRegistry()
    deleted = registry.update_workspace(mark_deleted(stored(registry), now=NOW))
    registry.update_workspace(replace(deleted, removal_started_at=NOW + GRACE))

    with pytest.raises(ValueError, match="is being removed"):
        change_workspace(registry, deleted.workspace_id, lambda read: change_plan(read, Plan.PREMIUM))
