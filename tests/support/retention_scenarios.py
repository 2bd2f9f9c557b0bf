"""Retention scenarios on the real adapters: what a test seeds in one workspace (blobs, quarantined
blobs, ledger rows and hourly aggregates, by the hour they belong to), the state one clean retention run
leaves, computed from the plans' windows rather than by retention's code, and the state observed with
the SDK and the existing readers, to compare the two."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.aggregate import Aggregates, EventRow, PerfRow, SyslogRow, UsageRow
from shared.ids import RawBlobName
from shared.plans import AGGREGATE_RETENTION_DAYS, PLAN_LIMITS, Plan
from shared.processing import LedgerEntry
from shared.rawstore import quarantine_name
from tests.support.runtime import Runtime

NOW = datetime(2024, 3, 15, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
PAYLOAD = gzip.compress(b'[{"Computer":"web-1","Message":"hello"}]')


def name_at(hour: datetime, log_type: str = "Syslog") -> str:
    return str(RawBlobName(hour=hour, log_type=log_type, blob_id=uuid.uuid4().hex))


def ledger_entry(workspace_id: str, blob_name: str) -> LedgerEntry:
    return LedgerEntry(
        workspace_id=workspace_id, blob_name=blob_name, etag='"0x1"', sha256="ab" * 32, record_count=1
    )


def rows_at(hour: datetime) -> Aggregates:
    return Aggregates(
        usage=[UsageRow(hour=hour, log_type="Syslog", computer="web-1", records=1, bytes=10)],
        perf=[PerfRow(hour, "web-1", "Processor", "% Time", "_Total", 1, 5.0, 5.0, 5.0)],
        events=[EventRow(hour=hour, log_type="Event", computer="web-1", event_id=7, level="Error", events=1)],
        syslog=[SyslogRow(hour=hour, computer="web-1", facility="auth", severity="err", messages=1)],
    )


@dataclass
class Seeded:
    """What a test put in one workspace, by the hour it belongs to."""

    workspace_id: str
    blobs: dict[str, datetime] = field(default_factory=dict)  # as stored (raw/ and quarantine/raw/)
    ledger: dict[str, datetime] = field(default_factory=dict)
    aggregate_hours: list[datetime] = field(default_factory=list)

    def add_blob(self, runtime: Runtime, hour: datetime, *, quarantined: bool = False) -> str:
        name = name_at(hour)
        stored = quarantine_name(name) if quarantined else name
        container = runtime.blob_service.get_container_client(f"ws-{self.workspace_id}")
        container.upload_blob(stored, PAYLOAD)
        self.blobs[stored] = hour
        if not quarantined:
            self.add_ledger_row(runtime, name, hour)
        return name

    def add_ledger_row(self, runtime: Runtime, name: str, hour: datetime) -> None:
        runtime.services.database.apply_blob(ledger_entry(self.workspace_id, name), Aggregates())
        self.ledger[name] = hour

    def add_rows(self, runtime: Runtime, hour: datetime) -> None:
        # Through a ledger entry of its own, as processing writes them; its blob name is of that hour.
        name = name_at(hour)
        runtime.services.database.apply_blob(ledger_entry(self.workspace_id, name), rows_at(hour))
        self.ledger[name] = hour
        self.aggregate_hours.append(hour)


AGGREGATE_TABLES = ("usage_hourly", "perf_hourly", "events_hourly", "syslog_hourly")


@dataclass(frozen=True)
class Expected:
    blobs: list[str]
    ledger: list[str]
    aggregate_hours: dict[str, list[datetime]]
    blobs_deleted: int
    aggregate_rows_deleted: int
    ledger_rows_deleted: int


def expected_after_one_run(seeded: Seeded, plan: Plan, now: datetime) -> Expected:
    """From the definitions, not from the code: a day stays while its end is inside the plan's window,
    an hour while its end is inside 390 days, a ledger row while its blob's day stays."""
    raw_window = timedelta(days=PLAN_LIMITS[plan].raw_retention_days)

    def day_inside(hour: datetime) -> bool:
        return datetime(hour.year, hour.month, hour.day, tzinfo=UTC) + timedelta(days=1) > now - raw_window

    hours_inside = [
        h for h in seeded.aggregate_hours if h + HOUR > now - timedelta(days=AGGREGATE_RETENTION_DAYS)
    ]
    return Expected(
        blobs=sorted(n for n, h in seeded.blobs.items() if day_inside(h)),
        ledger=sorted(n for n, h in seeded.ledger.items() if day_inside(h)),
        aggregate_hours=dict.fromkeys(AGGREGATE_TABLES, sorted(hours_inside)),
        blobs_deleted=sum(not day_inside(h) for h in seeded.blobs.values()),
        aggregate_rows_deleted=4 * (len(seeded.aggregate_hours) - len(hours_inside)),
        ledger_rows_deleted=sum(not day_inside(h) for h in seeded.ledger.values()),
    )


def observed(runtime: Runtime, seeded: Seeded) -> Expected:
    """The workspace's state read with the SDK and the existing readers, not with retention's code."""
    database = runtime.services.database
    workspace_id = seeded.workspace_id
    listings: tuple[Callable[[str], Sequence[UsageRow | PerfRow | EventRow | SyslogRow]], ...] = (
        database.list_usage,
        database.list_perf,
        database.list_events,
        database.list_syslog,
    )
    return Expected(
        blobs=runtime.blobs(workspace_id),
        ledger=sorted(n for n in seeded.ledger if database.blob_processed(workspace_id, n)),
        aggregate_hours={
            table: sorted(r.hour for r in listed(workspace_id))
            for table, listed in zip(AGGREGATE_TABLES, listings, strict=True)
        },
        blobs_deleted=0,
        aggregate_rows_deleted=0,
        ledger_rows_deleted=0,
    )


def state_of(expected: Expected) -> tuple[list[str], list[str], dict[str, list[datetime]]]:
    return expected.blobs, expected.ledger, expected.aggregate_hours
