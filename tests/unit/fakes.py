"""In-memory implementations of the core's ports, for unit tests of the pure core only. The real
adapters are exercised against Azurite and the databases in tests/integration."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from shared.aggregate import Aggregates, UsageRow
from shared.audit import AuditChain, AuditEntry, AuditHead
from shared.errors import BlobNotFound, NotFound, WorkspaceNotFound
from shared.ids import RAW_PREFIX, day_prefix
from shared.processing import LedgerEntry
from shared.rawstore import QUARANTINE_PREFIX, RawBlob, quarantine_metadata, quarantine_name
from shared.workspaces import Workspace


@dataclass
class MemoryRawStore:
    blobs: dict[tuple[str, str], RawBlob] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)
    quarantine_error: Exception | None = None  # raised once by the next quarantine_raw

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
            raw = name.removeprefix(QUARANTINE_PREFIX)
            if ws == workspace_id and raw.startswith(RAW_PREFIX):
                year, month, day = raw.split("/")[1:4]
                days.add(date(int(year), int(month), int(day)))
        return sorted(days)

    def delete_raw_day(self, workspace_id: str, day: date) -> int:
        doomed = [
            k
            for k in self.blobs
            if k[0] == workspace_id and k[1].removeprefix(QUARANTINE_PREFIX).startswith(day_prefix(day))
        ]
        for key in doomed:
            del self.blobs[key]
        return len(doomed)

    def quarantine_raw(self, workspace_id: str, blob_name: str, *, reason: str, detail: str) -> None:
        target = (workspace_id, quarantine_name(blob_name))
        if self.quarantine_error is not None:
            error, self.quarantine_error = self.quarantine_error, None
            raise error
        blob = self.blobs.pop((workspace_id, blob_name), None)
        if blob is None:
            if target in self.blobs:
                return
            raise BlobNotFound(blob_name)
        metadata = quarantine_metadata(blob.metadata, reason=reason, detail=detail, at=datetime.now(UTC))
        self.blobs[target] = RawBlob(data=blob.data, metadata=metadata, etag=f"0x{len(self.blobs)}")

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
    aggregates: list[Aggregates] = field(default_factory=list)

    def apply_blob(self, entry: LedgerEntry, aggregates: Aggregates) -> bool:
        key = (entry.workspace_id, entry.blob_name)
        if key in self.ledger:
            return False
        self.ledger[key] = entry
        self.usage.extend(aggregates.usage)
        self.aggregates.append(aggregates)
        return True


@dataclass
class MemoryAuditStore:
    """The AuditStore contract in memory: an append succeeds only on the head it was built on."""

    entries: dict[str | None, list[AuditEntry]] = field(default_factory=dict)
    heads: dict[str | None, AuditHead] = field(default_factory=dict)
    races_to_lose: int = 0
    error: Exception | None = None
    gate: threading.Event | None = None  # when set, appends wait for it

    def head(self, workspace_id: str | None) -> AuditHead | None:
        return self.heads.get(workspace_id)

    def try_append(self, entry: AuditEntry, *, after: AuditHead | None) -> bool:
        if self.gate is not None:
            self.gate.wait()
        if self.error is not None:
            raise self.error
        if self.races_to_lose:
            self.races_to_lose -= 1
            return False
        if self.heads.get(entry.workspace_id) != after:
            return False
        self.entries.setdefault(entry.workspace_id, []).append(entry)
        self.heads[entry.workspace_id] = AuditHead(entry.sequence, entry.hash, version=str(entry.sequence))
        return True

    def read(self, workspace_id: str | None) -> AuditChain:
        return AuditChain(list(self.entries.get(workspace_id, [])), self.heads.get(workspace_id))

    def workspaces(self) -> list[str | None]:
        return list(self.entries)
