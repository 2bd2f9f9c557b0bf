"""Benchmark: a retention purge costs what it deletes, not what it keeps.

The measured path is `Retention.purge` itself on the real adapters (BlobRawStore on Azurite: the
expired day prefixes listed year, month and day levels up to the window's start, each day's blobs
listed and batch-deleted; Database on SQLite: the bounded aggregate and ledger deletes; the purge
report appended to the audit table on Azurite), for two workspaces that have the same 5 expired days
of 4 blobs each to delete and keep 10 or 1,000 days. The ratio of the two is the figure (target about
1). The expired days are put back before each run, outside the timing; runs alternate between the
workspaces so both see the same machine load.

Beside it, the listing a purge would need without the bound (every day the workspace holds, as the
report command lists them), for the same two workspaces: that one grows with the days kept.

A window of 1,000 days is longer than any plan's: the kept days lie after the window's start whatever
the plan says, and the listing cannot tell the difference."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from bench.timing import Timing
from devhost.azurite import Azurite, AzuritePorts
from shared.audit import AuditLog
from shared.audit_store import TableAuditStore
from shared.azure_diagnostics import TableSourceRegistry
from shared.azure_limits import TableDailyCounters
from shared.azure_storage import BlobRawStore, TableAgentRegistry, TableReplayGuard, TableWorkspaceRegistry
from shared.dcrs import TableDcrRegistry
from shared.ids import RawBlobName, container_name, new_workspace_id
from shared.plans import Plan
from shared.rawstore import gzip_bytes
from shared.retention import Retention, raw_from
from shared.secretstore import LocalSecretStore
from shared.settings import SqlDialect
from shared.sql import Database
from shared.workspaces import Workspace, WorkspaceState

DEFAULT_RUNS = 7
KEPT_DAYS = (10, 1000)
EXPIRED_DAYS = 5
BLOBS_PER_EXPIRED_DAY = 4
UPLOAD_THREADS = 32
PLAN = Plan.FREE
NOW = datetime(2025, 6, 15, 2, 0, tzinfo=UTC)
BODY = gzip_bytes(b'[{"Computer":"web-1","Message":"hello"}]')
TARGET_RATIO = 1.0


@dataclass
class Case:
    kept_days: int
    workspace: Workspace
    purge: Timing = field(default_factory=Timing)
    purge_list_requests: int = 0
    full_listing: Timing = field(default_factory=Timing)
    full_listing_requests: int = 0
    blobs_deleted: int = 0


@dataclass(frozen=True)
class RetentionResult:
    runs: int
    cases: list[Case]

    def ratio(self, timing: Callable[[Case], float]) -> float:
        few, many = self.cases
        return timing(many) / timing(few) if timing(few) > 0 else float("inf")


class ListRequests:
    """Counts the List Blobs requests a client sends (one per page of names or prefixes)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, request: Any) -> None:
        if "comp=list" in request.http_request.url:
            self.count += 1

    @contextmanager
    def counted(self) -> Iterator[Callable[[], int]]:
        start = self.count
        yield lambda: self.count - start


def day_blob_names(day: date, blobs: int) -> list[str]:
    hours = (
        datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=5 * i) for i in range(blobs)
    )
    return [str(RawBlobName.new(hour, "Syslog")) for hour in hours]


def upload(service: BlobServiceClient, workspace_id: str, names: list[str], pool: ThreadPoolExecutor) -> None:
    container = service.get_container_client(container_name(workspace_id))
    list(pool.map(lambda name: container.upload_blob(name, BODY), names))


def run_retention_benchmark(*, runs: int, work_dir: Path) -> RetentionResult:
    azurite = Azurite(
        location=work_dir / "azurite", ports=AzuritePorts.free(), log_file=work_dir / "azurite.log"
    )
    azurite.start()
    try:
        return _measure(azurite.ports.connection_string, runs=runs, work_dir=work_dir)
    finally:
        azurite.stop()


def _measure(connection_string: str, *, runs: int, work_dir: Path) -> RetentionResult:
    requests = ListRequests()
    service = BlobServiceClient.from_connection_string(connection_string, raw_request_hook=requests)
    tables = TableServiceClient.from_connection_string(connection_string)
    database = Database.open(SqlDialect.SQLITE, str(work_dir / "retention.db"))
    database.migrate()
    store = BlobRawStore(service)
    retention = Retention(
        registry=TableWorkspaceRegistry(tables),
        raw_days=store,
        containers=store,
        database=database,
        secrets=LocalSecretStore(work_dir / "secrets"),
        agents=TableAgentRegistry(tables),
        assertion_ids=TableReplayGuard(tables),
        counters=TableDailyCounters(tables),
        sources=TableSourceRegistry(tables),
        dcrs=TableDcrRegistry(tables),
        audit=AuditLog(TableAuditStore(tables), clock=lambda: datetime.now(UTC)),
        delete_grace=timedelta(days=14),
    )
    first_kept = raw_from(NOW, retention_days=retention.plans[PLAN].raw_retention_days)
    expired = [first_kept - timedelta(days=EXPIRED_DAYS - i) for i in range(EXPIRED_DAYS)]
    cases = []
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        for kept_days in KEPT_DAYS:
            workspace = Workspace(new_workspace_id(), PLAN, WorkspaceState.ACTIVE, created_at=NOW)
            store.create_workspace_container(workspace.workspace_id)
            kept = [
                name for i in range(kept_days) for name in day_blob_names(first_kept + timedelta(days=i), 1)
            ]
            upload(service, workspace.workspace_id, kept, pool)
            cases.append(Case(kept_days=kept_days, workspace=workspace))
        for _ in range(runs):
            for case in cases:
                doomed = [name for day in expired for name in day_blob_names(day, BLOBS_PER_EXPIRED_DAY)]
                upload(service, case.workspace.workspace_id, doomed, pool)
                with requests.counted() as listed, case.purge.measure():
                    report = retention.purge(case.workspace, now=NOW)
                case.purge_list_requests = listed()
                case.blobs_deleted = report.blobs_deleted
                with requests.counted() as listed, case.full_listing.measure():
                    store.list_raw_days(case.workspace.workspace_id)
                case.full_listing_requests = listed()
    database.close()
    return RetentionResult(runs=runs, cases=cases)


def retention_lines(result: RetentionResult) -> list[str]:
    few, many = result.cases
    lines = [
        f"Retention purge (Retention.purge on Azurite + SQLite, {PLAN.value} plan): the same "
        f"{EXPIRED_DAYS} expired days x {BLOBS_PER_EXPIRED_DAY} blobs deleted per run,",
        f"10 or 1,000 kept days beside them; ms per purge, mean of {result.runs} runs (CPU = this process; "
        "Azurite's own CPU is in the wall figure only)",
        "",
        f"{'kept days':>10} {'blobs deleted':>14} {'wall ms':>9} {'CPU ms':>8} {'list requests':>14}"
        f"   {'full listing: wall ms':>22} {'list requests':>14}",
    ]
    for case in result.cases:
        lines.append(
            f"{case.kept_days:>10,} {case.blobs_deleted:>14} {case.purge.wall_ms_per_run():>9.1f} "
            f"{case.purge.cpu_ms_per_run():>8.1f} {case.purge_list_requests:>14}"
            f"   {case.full_listing.wall_ms_per_run():>22.1f} {case.full_listing_requests:>14}"
        )
    wall = result.ratio(lambda c: c.purge.wall_seconds)
    cpu = result.ratio(lambda c: c.purge.cpu_seconds)
    full = result.ratio(lambda c: c.full_listing.wall_seconds)
    lines += [
        f"purge ratio, 1,000 / 10 kept days: wall {wall:.2f}, CPU {cpu:.2f} (target {TARGET_RATIO:.0f}); "
        f"list requests {many.purge_list_requests} vs {few.purge_list_requests}",
        f"unbounded listing ratio: wall {full:.2f} (list requests {many.full_listing_requests} vs "
        f"{few.full_listing_requests}): what an unbounded purge would pay",
    ]
    return lines


def retention_json(result: RetentionResult) -> dict[str, Any]:
    return {
        "runs": result.runs,
        "cases": [
            {
                "kept_days": c.kept_days,
                "blobs_deleted": c.blobs_deleted,
                "purge_wall_ms": round(c.purge.wall_ms_per_run(), 2),
                "purge_cpu_ms": round(c.purge.cpu_ms_per_run(), 2),
                "purge_list_requests": c.purge_list_requests,
                "full_listing_wall_ms": round(c.full_listing.wall_ms_per_run(), 2),
                "full_listing_requests": c.full_listing_requests,
            }
            for c in result.cases
        ],
        "wall_ratio": round(result.ratio(lambda c: c.purge.wall_seconds), 3),
        "cpu_ratio": round(result.ratio(lambda c: c.purge.cpu_seconds), 3),
    }
