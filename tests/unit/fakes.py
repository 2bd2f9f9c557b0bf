"""In-memory implementations of the core's ports, for unit tests of the pure core only. The real
adapters are exercised against Azurite and the databases in tests/integration."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from shared.aggregate import Aggregates, UsageRow
from shared.audit import AuditChain, AuditEntry, AuditHead
from shared.diagnostics import Checkpoint, DiagnosticsSource, DiagnosticsTable, Position
from shared.errors import BlobNotFound, Conflict, NotFound, WorkspaceNotFound
from shared.ids import RawBlobName, day_prefix
from shared.processing import LedgerEntry
from shared.rawstore import (
    QUARANTINE_PREFIX,
    DeletedBlobs,
    RawBlob,
    parse_day_prefix,
    quarantine_metadata,
    quarantine_name,
)
from shared.retention import HeldRows
from shared.workspaces import Workspace, stored_version, workspace_changed
from tests.unit.fakes_agents import MemoryAgentRegistry, MemoryReplayGuard
from tests.unit.fakes_dcr import MemoryDcrRegistry


class Killed(BaseException):
    """The process died: not an error the code under test handles (it is not an Exception)."""


@dataclass
class Kill:
    """Shared by the fakes of one run: the run dies at the deletion after `deletions` deletions."""

    deletions: int

    def tick(self) -> None:
        if self.deletions <= 0:
            raise Killed
        self.deletions -= 1


def day_of(blob_name: str) -> date | None:
    """The day of a raw or quarantined blob's name."""
    return parse_day_prefix(blob_name.removeprefix(QUARANTINE_PREFIX)[: len("raw/yyyy/MM/dd/")])


@dataclass
class MemoryRawStore:
    blobs: dict[tuple[str, str], RawBlob] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)
    quarantine_error: Exception | None = None  # raised once by the next quarantine_raw
    kill: Kill | None = None  # counts deletions down to a killed run

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

    def delete_workspace_container(self, workspace_id: str) -> None:
        if self.kill is not None:
            self.kill.tick()
        self.containers.discard(workspace_id)
        for key in [k for k in self.blobs if k[0] == workspace_id]:
            del self.blobs[key]

    def list_raw_days(self, workspace_id: str, *, before: date | None = None) -> list[date]:
        days = {day_of(name) for ws, name in self.blobs if ws == workspace_id}
        return sorted(d for d in days if d is not None and (before is None or d < before))

    def list_raw_day_names(self, workspace_id: str, day: date) -> list[str]:
        return [name for ws, name in sorted(self.blobs) if ws == workspace_id and day_of(name) == day]

    def delete_raw_day(self, workspace_id: str, day: date) -> DeletedBlobs:
        blobs = size = 0
        for name in self.list_raw_day_names(workspace_id, day):
            if self.kill is not None:
                self.kill.tick()
            size += len(self.blobs.pop((workspace_id, name)).data)
            blobs += 1
        return DeletedBlobs(blobs=blobs, bytes=size)

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
    """The WorkspaceRegistry port in memory, with the Table adapter's optimistic concurrency: every
    write gives the entry a new version (a counter standing in for the ETag), and updates and deletes
    succeed only while the entry is at the version the caller read."""

    workspaces: dict[str, Workspace] = field(default_factory=dict)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def get_workspace(self, workspace_id: str) -> Workspace:
        try:
            return self.workspaces[workspace_id]
        except KeyError:
            raise WorkspaceNotFound(f"Workspace {workspace_id} does not exist.") from None

    def list_workspaces(self) -> list[Workspace]:
        return sorted(self.workspaces.values(), key=lambda w: w.created_at)

    def create_workspace(self, workspace: Workspace) -> Workspace:
        if workspace.workspace_id in self.workspaces:
            raise Conflict(f"Workspace {workspace.workspace_id} exists already.")
        return self._store(workspace)

    def update_workspace(self, workspace: Workspace) -> Workspace:
        expected = stored_version(workspace)
        current = self.workspaces.get(workspace.workspace_id)
        if current is None:
            raise WorkspaceNotFound(f"Workspace {workspace.workspace_id} does not exist.")
        if current.version != expected:
            raise workspace_changed(workspace.workspace_id)
        return self._store(workspace)

    def delete_workspace(self, workspace: Workspace) -> None:
        expected = stored_version(workspace)
        current = self.workspaces.get(workspace.workspace_id)
        if current is None:
            return
        if current.version != expected:
            raise workspace_changed(workspace.workspace_id)
        del self.workspaces[workspace.workspace_id]

    def _store(self, workspace: Workspace) -> Workspace:
        stored = replace(workspace, version=str(next(self._versions)))
        self.workspaces[workspace.workspace_id] = stored
        return stored


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


AGGREGATE_TABLES = ("usage_hourly", "perf_hourly", "events_hourly", "syslog_hourly")


@dataclass
class MemoryRetentionDatabase:
    """The retention side of shared.sql.Database: aggregate rows as (table, workspace, hour, key) and
    ledger rows as (workspace, blob name)."""

    aggregates: set[tuple[str, str, datetime, int]] = field(default_factory=set)
    ledger: set[tuple[str, str]] = field(default_factory=set)
    kill: Kill | None = None

    def purge_aggregates(self, workspace_id: str, *, before: datetime, batch_rows: int) -> int:
        doomed = sorted(r for r in self.aggregates if r[1] == workspace_id and r[2] < before)
        return self._delete(self.aggregates, doomed)

    def purge_ledger(self, workspace_id: str, *, before: date, batch_rows: int) -> int:
        doomed = sorted(r for r in self.ledger if r[0] == workspace_id and r[1] < day_prefix(before))
        return self._delete(self.ledger, doomed)

    def _delete(self, rows: set[Any], doomed: list[Any]) -> int:
        for row in doomed:
            if self.kill is not None:
                self.kill.tick()
            rows.discard(row)
        return len(doomed)

    def held_aggregates(self, workspace_id: str, *, before: datetime) -> list[HeldRows]:
        held = []
        for table in AGGREGATE_TABLES:
            hours = [r[2] for r in self.aggregates if r[0] == table and r[1] == workspace_id]
            held.append(
                HeldRows(
                    table=table,
                    rows=len(hours),
                    oldest=min(hours, default=None),
                    outside=sum(hour < before for hour in hours),
                )
            )
        return held

    def held_ledger(self, workspace_id: str, *, before: date) -> HeldRows:
        names = sorted(n for ws, n in self.ledger if ws == workspace_id)
        oldest = RawBlobName.parse(names[0]) if names else None
        return HeldRows(
            table="processed_blobs",
            rows=len(names),
            oldest=None if oldest is None else oldest.hour,
            outside=sum(n < day_prefix(before) for n in names),
        )

    def ledger_days(self, workspace_id: str, *, since: date) -> list[date]:
        days = {day_of(n) for ws, n in self.ledger if ws == workspace_id}
        return sorted(d for d in days if d is not None and d >= since)

    def list_ledger_names(self, workspace_id: str, *, day: date) -> list[str]:
        return sorted(n for ws, n in self.ledger if ws == workspace_id and n.startswith(day_prefix(day)))


class MemoryAgents(MemoryAgentRegistry):
    def delete_workspace_agents(self, workspace_id: str) -> int:
        doomed = [key for key in self.agents if key[0] == workspace_id]
        for key in doomed:
            del self.agents[key]
        return len(doomed)


class MemoryAssertionIds(MemoryReplayGuard):
    def delete_assertion_ids_expired_before(self, workspace_id: str, *, before: datetime) -> int:
        return self._delete(lambda key, expires_at: key[0] == workspace_id and expires_at < before)

    def count_assertion_ids_expired_before(self, workspace_id: str, *, before: datetime) -> int:
        return sum(1 for key, at in self.seen.items() if key[0] == workspace_id and at < before)

    def delete_workspace_assertion_ids(self, workspace_id: str) -> int:
        return self._delete(lambda key, _: key[0] == workspace_id)

    def _delete(self, doomed: Callable[[tuple[str, str], datetime], bool]) -> int:
        keys = [key for key, expires_at in self.seen.items() if doomed(key, expires_at)]
        for key in keys:
            del self.seen[key]
        return len(keys)


class MemoryDataCollectionRules(MemoryDcrRegistry):
    def delete_workspace_rules(self, workspace_id: str) -> int:
        doomed = [rule.immutable_id for rule in self.list_rules(workspace_id)]
        for immutable_id in doomed:
            del self.rules[immutable_id]
        return len(doomed)


@dataclass
class MemorySources:
    """The SourceRegistry contract: a checkpoint is replaced only while its etag is the stored one."""

    sources: dict[str, DiagnosticsSource] = field(default_factory=dict)
    checkpoints: dict[tuple[str, DiagnosticsTable], Checkpoint] = field(default_factory=dict)
    versions: int = 0

    def list_sources(self, workspace_id: str | None = None) -> list[DiagnosticsSource]:
        return [s for s in self.sources.values() if workspace_id in (None, s.workspace_id)]

    def get_source(self, source_id: str) -> DiagnosticsSource:
        try:
            return self.sources[source_id]
        except KeyError:
            raise NotFound(source_id) from None

    def create_source(self, source: DiagnosticsSource, *, start: Position) -> None:
        self.sources[source.source_id] = source
        for table in source.tables:
            self.checkpoints[(source.source_id, table)] = Checkpoint(
                source.source_id, table, start, None, self._etag()
            )

    def delete_source(self, source_id: str) -> None:
        self.sources.pop(source_id, None)
        for key in [k for k in self.checkpoints if k[0] == source_id]:
            del self.checkpoints[key]

    def get_checkpoint(self, source_id: str, table: DiagnosticsTable) -> Checkpoint:
        try:
            return self.checkpoints[(source_id, table)]
        except KeyError:
            raise NotFound(source_id) from None

    def try_replace_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint | None:
        key = (checkpoint.source_id, checkpoint.table)
        if key not in self.checkpoints or self.checkpoints[key].etag != checkpoint.etag:
            return None
        self.checkpoints[key] = replace(checkpoint, etag=self._etag())
        return self.checkpoints[key]

    def _etag(self) -> str:
        self.versions += 1
        return f"W/{self.versions}"


class MemoryCounters:
    """Daily ingestion counters by workspace, as retention's removal sees them."""

    def __init__(self) -> None:
        self.days: dict[str, set[date]] = {}

    def delete_workspace_counters(self, workspace_id: str) -> int:
        return len(self.days.pop(workspace_id, set()))

    def count_counters_before(self, workspace_id: str, *, before: date) -> int:
        return sum(1 for day in self.days.get(workspace_id, set()) if day < before)

    def delete_counters_before(self, workspace_id: str, *, before: date) -> int:
        days = self.days.get(workspace_id, set())
        expired = {day for day in days if day < before}
        days -= expired
        return len(expired)
