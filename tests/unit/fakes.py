"""In-memory implementations of the core's ports, for unit tests of the pure core only. The real
adapters are exercised against Azurite and the databases in tests/integration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from shared.aggregate import UsageRow
from shared.errors import BlobNotFound, NotFound, WorkspaceNotFound
from shared.ids import day_prefix
from shared.processing import LedgerEntry
from shared.rawstore import RawBlob
from shared.workspaces import Workspace


@dataclass
class MemoryRawStore:
    blobs: dict[tuple[str, str], RawBlob] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)

    def create_workspace_container(self, workspace_id: str) -> None:
        self.containers.add(workspace_id)

    def put_raw(self, workspace_id: str, blob_name: str, data: bytes, *, metadata: dict[str, str]) -> None:
        assert (workspace_id, blob_name) not in self.blobs, "raw blobs are never overwritten"
        self.blobs[(workspace_id, blob_name)] = RawBlob(
            data=data, metadata=dict(metadata), etag=f"0x{len(self.blobs)}"
        )

    def get_raw(self, workspace_id: str, blob_name: str) -> RawBlob:
        try:
            return self.blobs[(workspace_id, blob_name)]
        except KeyError:
            raise BlobNotFound(blob_name) from None

    def list_raw_days(self, workspace_id: str) -> list[date]:
        days = set()
        for ws, name in self.blobs:
            if ws == workspace_id:
                year, month, day = name.split("/")[1:4]
                days.add(date(int(year), int(month), int(day)))
        return sorted(days)

    def delete_raw_day(self, workspace_id: str, day: date) -> int:
        doomed = [k for k in self.blobs if k[0] == workspace_id and k[1].startswith(day_prefix(day))]
        for key in doomed:
            del self.blobs[key]
        return len(doomed)

    def names(self, workspace_id: str) -> list[str]:
        return sorted(name for ws, name in self.blobs if ws == workspace_id)


@dataclass
class MemoryRegistry:
    workspaces: dict[str, Workspace] = field(default_factory=dict)

    def get_workspace(self, workspace_id: str) -> Workspace:
        try:
            return self.workspaces[workspace_id]
        except KeyError:
            raise WorkspaceNotFound(workspace_id) from None

    def list_workspaces(self) -> list[Workspace]:
        return list(self.workspaces.values())

    def create_workspace(self, workspace: Workspace) -> None:
        self.workspaces[workspace.workspace_id] = workspace

    def update_workspace(self, workspace: Workspace) -> None:
        if workspace.workspace_id not in self.workspaces:
            raise WorkspaceNotFound(workspace.workspace_id)
        self.workspaces[workspace.workspace_id] = workspace


@dataclass
class MemorySecrets:
    values: dict[str, str] = field(default_factory=dict)

    def get_secret(self, name: str) -> str:
        try:
            return self.values[name]
        except KeyError:
            raise NotFound(name) from None

    def set_secret(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete_secret(self, name: str) -> None:
        self.values.pop(name, None)


@dataclass
class MemorySink:
    ledger: dict[tuple[str, str], LedgerEntry] = field(default_factory=dict)
    usage: list[UsageRow] = field(default_factory=list)

    def apply_blob(self, entry: LedgerEntry, usage: Sequence[UsageRow]) -> bool:
        key = (entry.workspace_id, entry.blob_name)
        if key in self.ledger:
            return False
        self.ledger[key] = entry
        self.usage.extend(usage)
        return True
