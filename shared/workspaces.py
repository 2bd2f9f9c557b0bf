"""Workspaces (tenants): the registry record, their shared keys, and the directory ingest asks.

The registry (an Azure Table) holds plan, state and creation time; keys are secrets and live only in
the secret store, never in the table."""

from __future__ import annotations

import base64
import secrets as token_source
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from shared.cache import TtlCache
from shared.errors import NotFound, WorkspaceChanged, WorkspaceNotFound
from shared.ids import new_workspace_id
from shared.plans import DEFAULT_PLAN, Plan
from shared.sharedkey import decode_key

SHARED_KEY_BYTES = 64  # Log Analytics keys are 64 random bytes, base64-encoded


class WorkspaceState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"  # ingestion refused at once; data removed after the grace period


@dataclass(frozen=True, slots=True)
class Workspace:
    workspace_id: str
    plan: Plan
    state: WorkspaceState
    created_at: datetime
    deleted_at: datetime | None = None
    # Set once the retention run has claimed the removal of a deleted workspace: restore is refused.
    removal_started_at: datetime | None = None
    # The registry entry's ETag when read (None: not stored yet); writes are conditional on it.
    version: str | None = field(default=None, compare=False)


class WorkspaceRegistry(Protocol):
    """Workspaces read from the registry carry their version; update and delete succeed only while
    the entry is still at that version, else WorkspaceChanged (a Workspace without one is a ValueError)."""

    def get_workspace(self, workspace_id: str) -> Workspace:
        """Raises WorkspaceNotFound."""

    def list_workspaces(self) -> list[Workspace]: ...

    def create_workspace(self, workspace: Workspace) -> Workspace:
        """The workspace as stored, with its version."""

    def update_workspace(self, workspace: Workspace) -> Workspace:
        """The workspace as stored, with its new version. Raises WorkspaceNotFound, WorkspaceChanged."""

    def delete_workspace(self, workspace: Workspace) -> None:
        """Removes the registry entry; gone already is fine. Raises WorkspaceChanged."""


def stored_version(workspace: Workspace) -> str:
    """The version a conditional write of `workspace` expects: only what was read has one."""
    if workspace.version is None:
        raise ValueError(f"Workspace {workspace.workspace_id} was not read from the registry: no version.")
    return workspace.version


def workspace_changed(workspace_id: str) -> WorkspaceChanged:
    return WorkspaceChanged(
        f"Workspace {workspace_id} was changed by someone else since it was read; read it again and retry."
    )


class SecretStore(Protocol):
    def get_secret(self, name: str) -> str:
        """Raises NotFound."""

    def set_secret(self, name: str, value: str) -> None: ...

    def delete_secret(self, name: str) -> None:
        """Succeeds when the secret is already gone."""


class WorkspaceContainers(Protocol):
    def create_workspace_container(self, workspace_id: str) -> None: ...

    def delete_workspace_container(self, workspace_id: str) -> None:
        """The container with everything in it; gone already is fine."""


def shared_key_secret_name(workspace_id: str, which: str) -> str:
    return f"ws-{workspace_id}-{which}-key"


def enrollment_key_secret_name(workspace_id: str) -> str:
    return f"ws-{workspace_id}-enrollment-key"


def reader_key_secret_name(workspace_id: str) -> str:
    return f"ws-{workspace_id}-reader-key"


KEY_SLOTS = ("primary", "secondary")  # the shared keys of ingestion
ROTATABLE_KEYS = (*KEY_SLOTS, "enrollment", "reader")


def new_shared_key() -> str:
    return base64.b64encode(token_source.token_bytes(SHARED_KEY_BYTES)).decode("ascii")


@dataclass(frozen=True, slots=True)
class NewWorkspace:
    workspace: Workspace
    primary_key: str
    secondary_key: str
    enrollment_key: str
    reader_key: str


def create_workspace(
    *,
    registry: WorkspaceRegistry,
    secrets: SecretStore,
    containers: WorkspaceContainers,
    plan: Plan = DEFAULT_PLAN,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> NewWorkspace:
    """Keys and container first, registry last: a workspace is visible only once it can receive data."""
    workspace = Workspace(
        workspace_id=new_workspace_id(), plan=plan, state=WorkspaceState.ACTIVE, created_at=now()
    )
    keys = {slot: new_shared_key() for slot in KEY_SLOTS}
    for slot, key in keys.items():
        secrets.set_secret(shared_key_secret_name(workspace.workspace_id, slot), key)
    enrollment_key = new_shared_key()
    secrets.set_secret(enrollment_key_secret_name(workspace.workspace_id), enrollment_key)
    reader_key = new_shared_key()
    secrets.set_secret(reader_key_secret_name(workspace.workspace_id), reader_key)
    containers.create_workspace_container(workspace.workspace_id)
    return NewWorkspace(
        workspace=registry.create_workspace(workspace),
        primary_key=keys["primary"],
        secondary_key=keys["secondary"],
        enrollment_key=enrollment_key,
        reader_key=reader_key,
    )


def rotate_key(*, secrets: SecretStore, workspace: Workspace, which: str) -> str:
    """Replaces one key; the other shared key stays valid, so agents move over without a gap. Caches
    honour the new key within their TTL (WorkspaceDirectory). The reader key has one slot: rotating it
    refuses the old one at once (within the TTL); a workspace made before reader keys gets its first
    one this way."""
    if which not in ROTATABLE_KEYS:
        raise ValueError(f"unknown key {which!r}")
    name = _key_secret_name(workspace.workspace_id, which)
    key = new_shared_key()
    secrets.set_secret(name, key)
    return key


def change_plan(workspace: Workspace, plan: Plan) -> Workspace:
    """ValueError once the workspace's removal has started: its registry entry is about to go."""
    if workspace.removal_started_at is not None:
        raise ValueError(
            f"Workspace {workspace.workspace_id} is being removed: its plan can no longer change."
        )
    return replace(workspace, plan=plan)


def mark_deleted(workspace: Workspace, *, now: datetime) -> Workspace:
    """Ingestion stops at once (only active workspaces are served); the data stays through the grace
    period. Deleting again keeps the first deletion time, so the grace period is not extended."""
    if workspace.state is WorkspaceState.DELETED:
        return workspace
    return replace(workspace, state=WorkspaceState.DELETED, deleted_at=now)


def start_removal(workspace: Workspace, *, now: datetime) -> Workspace:
    """The deleted workspace with its removal claimed: from then on it cannot be restored."""
    if workspace.state is not WorkspaceState.DELETED:
        raise ValueError(f"Workspace {workspace.workspace_id} is not deleted.")
    return replace(workspace, removal_started_at=now)


def removal_due_at(workspace: Workspace, *, grace: timedelta) -> datetime | None:
    """When a deleted workspace's data is to be removed; None when it is not deleted."""
    if workspace.state is not WorkspaceState.DELETED:
        return None
    # Deletion always sets deleted_at; an entity without it is never removed automatically, since
    # that would skip the grace period promised to the tenant.
    return None if workspace.deleted_at is None else workspace.deleted_at + grace


def restore_deleted(workspace: Workspace, *, now: datetime, grace: timedelta) -> Workspace:
    """The workspace active again, within the grace period only (after it, removal may be under way).
    ValueError when it is not deleted, its grace period is over or its removal has started."""
    if workspace.state is not WorkspaceState.DELETED:
        raise ValueError(f"Workspace {workspace.workspace_id} is not deleted.")
    if workspace.removal_started_at is not None:
        raise ValueError(
            f"Workspace {workspace.workspace_id} is being removed since "
            f"{workspace.removal_started_at.isoformat()}: it can no longer be restored."
        )
    due = removal_due_at(workspace, grace=grace)
    if due is not None and now >= due:
        raise ValueError(
            f"Workspace {workspace.workspace_id}'s grace period ended at {due.isoformat()}: its data is "
            "being or has been removed."
        )
    return replace(workspace, state=WorkspaceState.ACTIVE, deleted_at=None)


def _key_secret_name(workspace_id: str, which: str) -> str:
    if which == "enrollment":
        return enrollment_key_secret_name(workspace_id)
    if which == "reader":
        return reader_key_secret_name(workspace_id)
    return shared_key_secret_name(workspace_id, which)


def all_secret_names(workspace_id: str) -> list[str]:
    return [_key_secret_name(workspace_id, which) for which in ROTATABLE_KEYS]


class WorkspaceDirectory:
    """What authentication asks about a workspace, cached for a short TTL. Unknown ids are cached too,
    so a flood of made-up ids costs one registry read per id and TTL, not one per request."""

    def __init__(
        self,
        *,
        registry: WorkspaceRegistry,
        secrets: SecretStore,
        cache_ttl_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._secrets = secrets
        self._workspaces: TtlCache[str, Workspace | None] = TtlCache(
            ttl_seconds=cache_ttl_seconds, monotonic=monotonic
        )
        self._keys: TtlCache[str, tuple[bytes, ...]] = TtlCache(
            ttl_seconds=cache_ttl_seconds, monotonic=monotonic
        )
        self._reader_keys: TtlCache[str, str | None] = TtlCache(
            ttl_seconds=cache_ttl_seconds, monotonic=monotonic
        )

    def get_workspace(self, workspace_id: str) -> Workspace:
        workspace = self._workspaces.get_or_load(workspace_id, self._find_workspace)
        if workspace is None:
            raise WorkspaceNotFound(f"Workspace {workspace_id} does not exist.")
        return workspace

    def list_shared_keys(self, workspace_id: str) -> tuple[bytes, ...]:
        return self._keys.get_or_load(workspace_id, self._load_keys)

    def reader_key(self, workspace_id: str) -> str | None:
        """None for a workspace that has none yet (made before reader keys, never rotated)."""
        return self._reader_keys.get_or_load(workspace_id, self._load_reader_key)

    def _find_workspace(self, workspace_id: str) -> Workspace | None:
        try:
            return self._registry.get_workspace(workspace_id)
        except WorkspaceNotFound:
            return None

    def _load_keys(self, workspace_id: str) -> tuple[bytes, ...]:
        keys = []
        for slot in KEY_SLOTS:
            try:
                keys.append(decode_key(self._secrets.get_secret(shared_key_secret_name(workspace_id, slot))))
            except NotFound:
                continue
        return tuple(keys)

    def _load_reader_key(self, workspace_id: str) -> str | None:
        try:
            return self._secrets.get_secret(reader_key_secret_name(workspace_id))
        except NotFound:
            return None
