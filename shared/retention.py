"""Retention: what the daily run deletes, the removal of deleted workspaces after their grace period,
and the check that both did their job.

The windows, all counted in UTC, each deleting only what has wholly left it:

- raw data, and raw data moved to quarantine/, per the workspace's plan, by day prefix: day D goes
  once D+1 00:00 <= now - window, i.e. D < `raw_from`. A downgrade shortens the window from the next
  run; an upgrade keeps what is still inside the new one.
- aggregate rows AGGREGATE_RETENTION_DAYS whatever the plan, by hour: hour H goes once
  H+1h <= now - 390 days, i.e. H < `aggregates_from`.
- ledger rows (processed_blobs) exactly as long as their blob's day: a ledger row is what makes a
  redelivered BlobCreated event harmless, so it must outlive every blob that could still be delivered.
  Its rows are purged with the raw window's bound and only after that window's raw days are gone, so a
  ledger row never goes while its blob stays (and Event Grid stops redelivering after 24 hours, far
  inside the shortest window, 7 days).
- daily ingestion counters COUNTER_RETENTION_DAYS, by day: the daily cap and the dashboard read only
  today's, so older ones are history kept a little over a month for an operator looking back.
- client-assertion ids (the replay guard's, shared.certauth) once their `expires_at` has passed: that
  is the assertion's `exp` plus the clock skew certauth allows, after which the assertion is refused
  as expired before its id is looked at, so a deleted id can never be replayed.

Every step is idempotent (a blob or row already gone is success, SQL rows go in bounded batches, each
its own transaction), so a run that dies half way is finished by the next one, and two overlapping
runs end where one would have."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from shared.audit import AuditAction, AuditLog
from shared.diagnostics import SourceRegistry, remove_source
from shared.errors import RetentionIncomplete, SluiceError, WorkspaceChanged, WorkspaceNotFound
from shared.plans import AGGREGATE_RETENTION_DAYS, PLAN_LIMITS, Plan, PlanLimits
from shared.rawstore import QUARANTINE_PREFIX, RawDays
from shared.telemetry import workspace_log
from shared.workspaces import (
    SecretStore,
    Workspace,
    WorkspaceContainers,
    WorkspaceRegistry,
    all_secret_names,
    removal_due_at,
    start_removal,
)

if TYPE_CHECKING:
    from shared.runtime import Services

log = logging.getLogger("sluice.retention")

RETENTION_ACTOR = "system:retention"
PURGE_BATCH_ROWS = 5000
LEDGER_TABLE = "processed_blobs"
# The timer runs daily: what has been outside its window for longer than that should be gone.
PURGE_INTERVAL = timedelta(days=1)
# Removal deletes every row of the workspace: all of them are before this.
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)
MISSING_EXAMPLES = 3
COUNTER_RETENTION_DAYS = 35


@dataclass(frozen=True, slots=True)
class HeldRows:
    """A workspace's rows in one table: how many, the oldest hour (the ledger: its oldest blob's
    hour), and how many are outside the window asked about."""

    table: str
    rows: int
    oldest: datetime | None
    outside: int


class RetentionDatabase(Protocol):
    def purge_aggregates(self, workspace_id: str, *, before: datetime, batch_rows: int) -> int:
        """Deletes the workspace's aggregate rows of hours before `before`, at most `batch_rows` per
        transaction; returns how many."""

    def purge_ledger(self, workspace_id: str, *, before: date, batch_rows: int) -> int:
        """The same for ledger rows of blobs of days before `before`."""

    def held_aggregates(self, workspace_id: str, *, before: datetime) -> list[HeldRows]: ...

    def held_ledger(self, workspace_id: str, *, before: date) -> HeldRows: ...

    def ledger_days(self, workspace_id: str, *, since: date) -> list[date]:
        """The days, from `since` on, of the blobs the ledger holds."""

    def list_ledger_names(self, workspace_id: str, *, day: date) -> list[str]: ...


class WorkspaceAgents(Protocol):
    def delete_workspace_agents(self, workspace_id: str) -> int:
        """Deletes every agent registered to the workspace; returns how many. None left is fine."""


class WorkspaceAssertionIds(Protocol):
    def delete_assertion_ids_expired_before(self, workspace_id: str, *, before: datetime) -> int:
        """Deletes the workspace's client-assertion ids whose expires_at is before `before`; returns how
        many. None left is fine."""

    def count_assertion_ids_expired_before(self, workspace_id: str, *, before: datetime) -> int: ...

    def delete_workspace_assertion_ids(self, workspace_id: str) -> int:
        """Deletes every client-assertion id of the workspace; returns how many. None left is fine."""


class WorkspaceDataCollectionRules(Protocol):
    def delete_workspace_rules(self, workspace_id: str) -> int:
        """Deletes the workspace's data collection rules, and no other's; returns how many. None left is
        fine."""


class WorkspaceCounters(Protocol):
    def delete_workspace_counters(self, workspace_id: str) -> int:
        """Deletes the workspace's daily ingestion counters; returns how many. None left is fine."""

    def delete_counters_before(self, workspace_id: str, *, before: date) -> int:
        """Deletes the workspace's counters of days before `before`; returns how many."""

    def count_counters_before(self, workspace_id: str, *, before: date) -> int: ...


# -- the windows -----------------------------------------------------------------------------------------


def raw_from(now: datetime, *, retention_days: int) -> date:
    """The first day inside the window: every day before it ended at or before now - window."""
    return (now.astimezone(UTC) - timedelta(days=retention_days)).date()


def aggregates_from(now: datetime) -> datetime:
    """The first hour inside the aggregates' window: every hour before it ended at or before
    now - 390 days."""
    edge = now.astimezone(UTC) - timedelta(days=AGGREGATE_RETENTION_DAYS)
    return edge.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Windows:
    """Where a workspace's windows start as of one instant; what is before them is outside."""

    plan: Plan
    raw_days: int
    raw_from: date
    aggregates_from: datetime
    counters_from: date

    @classmethod
    def of(cls, plan: Plan, *, limits: PlanLimits, now: datetime) -> Windows:
        days = limits.raw_retention_days
        return cls(
            plan=plan,
            raw_days=days,
            raw_from=raw_from(now, retention_days=days),
            aggregates_from=aggregates_from(now),
            counters_from=raw_from(now, retention_days=COUNTER_RETENTION_DAYS),
        )


def day_ranges(days: Iterable[date]) -> list[str]:
    """Days as ISO 8601 dates and intervals of consecutive days (`2024-01-01/2024-03-05`): a purge of
    years of days stays a few entries long in the audit log."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(days):
        if ranges and day - ranges[-1][1] <= timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return [first.isoformat() if first == last else f"{first}/{last}" for first, last in ranges]


# -- reports -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class PurgeReport:
    action: ClassVar[AuditAction] = AuditAction.RETENTION_PURGE
    workspace_id: str
    windows: Windows
    days_deleted: list[date] = field(default_factory=list)
    blobs_deleted: int = 0
    bytes_deleted: int = 0
    aggregate_rows_deleted: int = 0
    ledger_rows_deleted: int = 0
    counters_deleted: int = 0
    # The replay guard's client-assertion ids (audit details refuse names containing "assertion").
    replay_ids_deleted: int = 0

    def details(self) -> dict[str, Any]:
        return {
            "plan": self.windows.plan.value,
            "raw_retention_days": self.windows.raw_days,
            "raw_kept_from": self.windows.raw_from.isoformat(),
            "aggregates_kept_from": self.windows.aggregates_from.isoformat(),
            "counters_kept_from": self.windows.counters_from.isoformat(),
            "days_deleted": day_ranges(self.days_deleted),
            "blobs_deleted": self.blobs_deleted,
            "bytes_deleted": self.bytes_deleted,
            "aggregate_rows_deleted": self.aggregate_rows_deleted,
            "ledger_rows_deleted": self.ledger_rows_deleted,
            "counters_deleted": self.counters_deleted,
            "replay_ids_deleted": self.replay_ids_deleted,
        }


@dataclass(slots=True)
class RemovalReport:
    action: ClassVar[AuditAction] = AuditAction.WORKSPACE_REMOVE
    workspace_id: str
    deleted_at: datetime | None
    aggregate_rows_deleted: int = 0
    ledger_rows_deleted: int = 0
    agents_deleted: int = 0
    replay_ids_deleted: int = 0
    counters_deleted: int = 0
    diagnostics_sources_deleted: int = 0
    data_collection_rules_deleted: int = 0

    def details(self) -> dict[str, Any]:
        return {
            "deleted_at": None if self.deleted_at is None else self.deleted_at.isoformat(),
            "removed": [
                "container",
                "aggregate rows",
                "ledger rows",
                "workspace keys",
                "agents",
                "client assertion ids",
                "daily ingestion counters",
                "diagnostics sources",
                "data collection rules",
                "registry",
            ],
            "aggregate_rows_deleted": self.aggregate_rows_deleted,
            "ledger_rows_deleted": self.ledger_rows_deleted,
            "agents_deleted": self.agents_deleted,
            "replay_ids_deleted": self.replay_ids_deleted,
            "counters_deleted": self.counters_deleted,
            "diagnostics_sources_deleted": self.diagnostics_sources_deleted,
            "data_collection_rules_deleted": self.data_collection_rules_deleted,
        }


@dataclass(frozen=True, slots=True)
class Holdings:
    """What a workspace holds, against its windows as of one instant."""

    workspace: Workspace
    windows: Windows
    raw_days: list[date]
    aggregates: list[HeldRows]
    ledger: HeldRows
    removal_due: datetime | None


# -- the run -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retention:
    registry: WorkspaceRegistry
    raw_days: RawDays
    containers: WorkspaceContainers
    database: RetentionDatabase
    secrets: SecretStore
    agents: WorkspaceAgents
    assertion_ids: WorkspaceAssertionIds
    counters: WorkspaceCounters
    sources: SourceRegistry
    dcrs: WorkspaceDataCollectionRules
    audit: AuditLog
    delete_grace: timedelta
    plans: Mapping[Plan, PlanLimits] = field(default_factory=lambda: PLAN_LIMITS)
    batch_rows: int = PURGE_BATCH_ROWS
    actor: str = RETENTION_ACTOR  # the timer; an operator's login when the CLI runs it

    @classmethod
    def from_services(cls, current: Services) -> Retention:
        from shared.azure_diagnostics import source_registry
        from shared.azure_limits import TableDailyCounters
        from shared.azure_storage import TableReplayGuard, table_service

        tables = table_service(current.settings.storage)
        return cls(
            registry=current.registry,
            raw_days=current.raw_store,
            containers=current.raw_store,
            database=current.database,
            secrets=current.secrets,
            agents=current.agents,
            assertion_ids=TableReplayGuard(tables),
            counters=TableDailyCounters(tables),
            sources=source_registry(current),
            dcrs=current.dcrs,
            audit=current.audit,
            delete_grace=timedelta(days=current.settings.workspace_delete_grace_days),
            plans=current.settings.plans,
        )

    def windows(self, workspace: Workspace, *, now: datetime) -> Windows:
        return Windows.of(workspace.plan, limits=self.plans[workspace.plan], now=now)

    def run(self, *, now: datetime) -> list[PurgeReport | RemovalReport]:
        """Every workspace: removed when deleted and past its grace period, else purged. Every workspace
        gets its turn even if another one fails; the failures are raised together at the end, so the
        timer's invocation is marked failed and the log says which workspaces were skipped."""
        reports: list[PurgeReport | RemovalReport] = []
        failed: dict[str, SluiceError] = {}
        for workspace in self.registry.list_workspaces():
            try:
                if not self._removal_due(workspace, now=now):
                    reports.append(self.purge(workspace, now=now))
                elif removed := self.remove(workspace.workspace_id, now=now):
                    reports.append(removed)
            except SluiceError as error:
                workspace_log(log, workspace.workspace_id).error("retention failed: %s", error.message)
                failed[workspace.workspace_id] = error
        if failed:
            raise RetentionIncomplete(
                f"Retention failed for {len(failed)} workspace(s): {', '.join(sorted(failed))}.",
                reports=reports,
            )
        return reports

    def purge(self, workspace: Workspace, *, now: datetime) -> PurgeReport:
        """Raw days, then aggregate rows, then ledger rows, then daily counters past their windows, then
        expired client-assertion ids, then the report in the audit log. A failure part way is audited
        too (what went, and why it stopped), then raised."""
        workspace_id = workspace.workspace_id
        windows = self.windows(workspace, now=now)
        report = PurgeReport(workspace_id=workspace_id, windows=windows)
        with self._audited(report):
            listed = self.raw_days.list_raw_days(workspace_id, before=windows.raw_from)
            # The store lists only days before the bound; checked again here, where the promise is made.
            for day in (d for d in listed if d < windows.raw_from):
                deleted = self.raw_days.delete_raw_day(workspace_id, day)
                report.days_deleted.append(day)
                report.blobs_deleted += deleted.blobs
                report.bytes_deleted += deleted.bytes
            report.aggregate_rows_deleted = self.database.purge_aggregates(
                workspace_id, before=windows.aggregates_from, batch_rows=self.batch_rows
            )
            # Only now that the window's raw days are gone (see the module's notes).
            report.ledger_rows_deleted = self.database.purge_ledger(
                workspace_id, before=windows.raw_from, batch_rows=self.batch_rows
            )
            report.counters_deleted = self.counters.delete_counters_before(
                workspace_id, before=windows.counters_from
            )
            # Past its expires_at the assertion itself is refused as expired (see the module's notes).
            report.replay_ids_deleted = self.assertion_ids.delete_assertion_ids_expired_before(
                workspace_id, before=now
            )
        workspace_log(log, workspace_id).info(
            "retention (%s, %d days): deleted %d blobs (%d bytes) in %d day prefixes, %d aggregate rows, "
            "%d ledger rows, %d daily counters, %d client assertion ids",
            windows.plan,
            windows.raw_days,
            report.blobs_deleted,
            report.bytes_deleted,
            len(report.days_deleted),
            report.aggregate_rows_deleted,
            report.ledger_rows_deleted,
            report.counters_deleted,
            report.replay_ids_deleted,
        )
        return report

    def remove(self, workspace_id: str, *, now: datetime) -> RemovalReport | None:
        """Removes a deleted workspace whose grace period is over: its container, all its SQL rows, its
        keys, its agents and their client-assertion ids, its daily ingestion counters, its diagnostics
        sources (and their SAS), its data collection rules, and last its registry entry, so a run that
        stops part way finds it again and finishes (each step succeeds when its part is already gone).
        The audit log is kept. None when there is nothing to remove: the workspace is gone, or was
        changed since read (restored, or claimed by an overlapping run, which removes it).

        The removal is first claimed with a write conditional on the entry read, which restore refuses
        from then on: a restore that lands before the claim makes the claim fail (nothing is removed),
        one after it is refused. The registry entry is deleted conditional on the claim's version."""
        try:
            # Read again just before deleting: a restore that landed since the list was read wins.
            workspace = self.registry.get_workspace(workspace_id)
            if not self._removal_due(workspace, now=now):
                return None
            # Already claimed: by a run that stopped part way, or by one running now; either way every
            # step below is idempotent, and the registry delete conditional on the claim's version.
            claimed = (
                workspace
                if workspace.removal_started_at is not None
                else self.registry.update_workspace(start_removal(workspace, now=now))
            )
        except WorkspaceNotFound:
            return None
        except WorkspaceChanged:
            workspace_log(log, workspace_id).info("changed while claiming its removal; left to the next run")
            return None
        report = RemovalReport(workspace_id=workspace_id, deleted_at=workspace.deleted_at)
        # Audited before the registry entry goes: once that is gone no later run would find the
        # workspace to audit. A run that stops part way audits what it removed; the next one finishes.
        with self._audited(report):
            self.containers.delete_workspace_container(workspace_id)
            report.aggregate_rows_deleted = self.database.purge_aggregates(
                workspace_id, before=END_OF_TIME, batch_rows=self.batch_rows
            )
            report.ledger_rows_deleted = self.database.purge_ledger(
                workspace_id, before=END_OF_TIME.date(), batch_rows=self.batch_rows
            )
            for name in all_secret_names(workspace_id):
                self.secrets.delete_secret(name)
            report.agents_deleted = self.agents.delete_workspace_agents(workspace_id)
            report.replay_ids_deleted = self.assertion_ids.delete_workspace_assertion_ids(workspace_id)
            report.counters_deleted = self.counters.delete_workspace_counters(workspace_id)
            for source in self.sources.list_sources(workspace_id):
                remove_source(
                    sources=self.sources,
                    secrets=self.secrets,
                    workspace_id=workspace_id,
                    source_id=source.source_id,
                )
                report.diagnostics_sources_deleted += 1
            report.data_collection_rules_deleted = self.dcrs.delete_workspace_rules(workspace_id)
        self._delete_claimed(claimed)
        workspace_log(log, workspace_id).info("workspace removed after its grace period")
        return report

    def _delete_claimed(self, claimed: Workspace) -> None:
        """The registry entry, conditional on the claim's version. Changed since (an answer lost and
        retried, or a write that does not undo the claim): deleted at its new version while it is still
        claimed; gone meanwhile is done; a restore cannot land after the claim, so anything else is
        raised."""
        try:
            self.registry.delete_workspace(claimed)
        except WorkspaceChanged:
            try:
                fresh = self.registry.get_workspace(claimed.workspace_id)
            except WorkspaceNotFound:
                return  # an overlapping run deleted it first
            if fresh.removal_started_at is None:
                raise
            self.registry.delete_workspace(fresh)

    @contextmanager
    def _audited(self, report: PurgeReport | RemovalReport) -> Iterator[None]:
        """Appends `report` to the workspace's audit log once the work in the block is done; a failure
        part way is audited too (what went, and why it stopped), then raised."""
        try:
            yield
        except SluiceError as error:
            self.audit.record(
                report.workspace_id, self.actor, report.action, **report.details(), incomplete=error.code
            )
            raise
        self.audit.record(report.workspace_id, self.actor, report.action, **report.details())

    def _removal_due(self, workspace: Workspace, *, now: datetime) -> bool:
        due = removal_due_at(workspace, grace=self.delete_grace)
        return due is not None and now >= due

    # -- report and verify -----------------------------------------------------------------------------

    def holdings(self, workspace: Workspace, *, now: datetime) -> Holdings:
        """What the workspace holds; `outside` counts what the next run will delete."""
        workspace_id = workspace.workspace_id
        windows = self.windows(workspace, now=now)
        return Holdings(
            workspace=workspace,
            windows=windows,
            raw_days=self.raw_days.list_raw_days(workspace_id),
            aggregates=self.database.held_aggregates(workspace_id, before=windows.aggregates_from),
            ledger=self.database.held_ledger(workspace_id, before=windows.raw_from),
            removal_due=removal_due_at(workspace, grace=self.delete_grace),
        )

    def verify(self, workspace: Workspace, *, now: datetime) -> list[str]:
        """The violations, [] when none: anything still held that left its window more than one timer
        period (PURGE_INTERVAL) ago (raw days, aggregate and ledger rows, daily counters, expired
        client-assertion ids), a workspace not removed a period after its grace, and any ledger row
        inside the raw window whose blob is neither in raw/ nor in quarantine/."""
        workspace_id = workspace.workspace_id
        lagging = self.windows(workspace, now=now - PURGE_INTERVAL)
        violations = [
            f"raw day {day} is outside the {lagging.raw_days}-day window"
            for day in self.raw_days.list_raw_days(workspace_id, before=lagging.raw_from)
        ]
        violations += [
            f"{held.outside} {held.table} rows are older than {AGGREGATE_RETENTION_DAYS} days"
            for held in self.database.held_aggregates(workspace_id, before=lagging.aggregates_from)
            if held.outside
        ]
        ledger = self.database.held_ledger(workspace_id, before=lagging.raw_from)
        if ledger.outside:
            violations.append(
                f"{ledger.outside} {LEDGER_TABLE} rows are of blobs outside the {lagging.raw_days}-day window"
            )
        counters = self.counters.count_counters_before(workspace_id, before=lagging.counters_from)
        if counters:
            violations.append(f"{counters} daily counters are older than {COUNTER_RETENTION_DAYS} days")
        expired = self.assertion_ids.count_assertion_ids_expired_before(
            workspace_id, before=now - PURGE_INTERVAL
        )
        if expired:
            violations.append(f"{expired} client assertion ids expired more than a run ago")
        if self._removal_due(workspace, now=now - PURGE_INTERVAL):
            violations.append(f"deleted at {workspace.deleted_at} and still not removed")
        violations += self._missing_blobs(workspace_id, since=self.windows(workspace, now=now).raw_from)
        return violations

    def _missing_blobs(self, workspace_id: str, *, since: date) -> list[str]:
        """Day by day, so memory holds one day's names at a time."""
        violations = []
        for day in self.database.ledger_days(workspace_id, since=since):
            stored = {
                name.removeprefix(QUARANTINE_PREFIX)
                for name in self.raw_days.list_raw_day_names(workspace_id, day)
            }
            missing = [n for n in self.database.list_ledger_names(workspace_id, day=day) if n not in stored]
            if missing:
                examples = ", ".join(missing[:MISSING_EXAMPLES])
                violations.append(
                    f"{day}: {len(missing)} processed blobs are in neither raw/ nor quarantine/ "
                    f"(e.g. {examples})"
                )
        return violations
