"""Retention of raw data: whole day prefixes that lie entirely outside the plan's window are
deleted; nothing inside the window ever is."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from shared.audit import AuditAction, AuditLog
from shared.errors import RetentionIncomplete, SluiceError
from shared.plans import PLAN_LIMITS
from shared.rawstore import RawStore
from shared.telemetry import workspace_log
from shared.workspaces import Workspace, WorkspaceRegistry

log = logging.getLogger("sluice.retention")


def expired_days(days: Iterable[date], *, now: datetime, retention_days: int) -> list[date]:
    """Days whose last instant is older than `now - retention_days`: day D ends at D+1 00:00 UTC, so it
    is wholly expired when D+1 <= (now - window).date(), i.e. D < (now - window).date()."""
    cutoff = (now.astimezone(UTC) - timedelta(days=retention_days)).date()
    return sorted(day for day in days if day < cutoff)


@dataclass(slots=True)
class PurgeReport:
    workspace_id: str
    days_deleted: list[date] = field(default_factory=list)
    blobs_deleted: int = 0


def purge_raw(workspace: Workspace, *, now: datetime, raw_store: RawStore) -> PurgeReport:
    window = PLAN_LIMITS[workspace.plan].raw_retention_days
    report = PurgeReport(workspace_id=workspace.workspace_id)
    for day in expired_days(raw_store.list_raw_days(workspace.workspace_id), now=now, retention_days=window):
        report.blobs_deleted += raw_store.delete_raw_day(workspace.workspace_id, day)
        report.days_deleted.append(day)
    workspace_log(log, workspace.workspace_id).info(
        "retention (%s, %d days): deleted %d blobs in %d day prefixes",
        workspace.plan,
        window,
        report.blobs_deleted,
        len(report.days_deleted),
    )
    return report


RETENTION_ACTOR = "system:retention"


def run_retention(
    *, now: datetime, registry: WorkspaceRegistry, raw_store: RawStore, audit: AuditLog
) -> list[PurgeReport]:
    """Every workspace gets its run even if another one fails; the failures are raised together at the
    end, so the timer's invocation is marked failed and the log says which workspaces were skipped."""
    reports: list[PurgeReport] = []
    failed: dict[str, SluiceError] = {}
    for workspace in registry.list_workspaces():
        try:
            report = purge_raw(workspace, now=now, raw_store=raw_store)
            audit.record(
                workspace.workspace_id,
                RETENTION_ACTOR,
                AuditAction.RETENTION_PURGE,
                days_deleted=[day.isoformat() for day in report.days_deleted],
                blobs_deleted=report.blobs_deleted,
            )
            reports.append(report)
        except SluiceError as error:
            workspace_log(log, workspace.workspace_id).error("retention failed: %s", error.message)
            failed[workspace.workspace_id] = error
    if failed:
        raise RetentionIncomplete(
            f"Retention failed for {len(failed)} workspace(s): {', '.join(sorted(failed))}.",
            reports=reports,
        )
    return reports
