"""Retention on the real adapters: Azurite for blobs, tables and the audit log, SQLite and PostgreSQL for
the aggregates and the ledger, the `sluice` commands in process and the timer's function folder."""

from __future__ import annotations

import contextlib
import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlglot
from azure.storage.blob import BlobServiceClient
from sqlglot import exp

import ingest_http
import retention_timer
from devhost.azurite import Azurite
from shared.agents import Agent, AgentState
from shared.audit import AuditAction
from shared.azure_limits import TableDailyCounters
from shared.azure_storage import ASSERTION_IDS_TABLE, BlobRawStore, TableReplayGuard, table_service
from shared.cli import main as sluice
from shared.dcrs import DataCollectionRule, new_immutable_id
from shared.errors import NotFound, WorkspaceNotFound
from shared.limits import NO_COUNT
from shared.plans import AGGREGATE_RETENTION_DAYS, PLAN_LIMITS, Plan
from shared.rawstore import DeletedBlobs, RawDays, quarantine_name
from shared.retention import COUNTER_RETENTION_DAYS, PurgeReport, RemovalReport, Retention
from shared.settings import SqlDialect
from shared.sql import Database, statement
from shared.workspaces import Workspace, WorkspaceRegistry, WorkspaceState, all_secret_names
from tests.support.concurrency import run_together
from tests.support.datacollector import signed_request, timer_request
from tests.support.retention_scenarios import (
    HOUR,
    NOW,
    PAYLOAD,
    Seeded,
    expected_after_one_run,
    name_at,
    observed,
    state_of,
)
from tests.support.runtime import Runtime
from tests.support.storage import azurite_for_tests, blob_service
from tests.unit.fakes import Killed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """The module's own: retention runs over every workspace in the registry, which on the session's
    Azurite holds every earlier test's workspaces too."""
    yield from azurite_for_tests(tmp_path_factory)


# Hours from a window's edge: both sides of it, of the boundary day, and of the days next to it.
EDGE_OFFSETS = (-49, -26, -25, -24, -3, -2, -1, 0, 1, 2, 21, 22, 23, 24, 25, 48)
AGGREGATE_EDGE_OFFSETS = (-25, -2, -1, 0, 1, 24)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def seed_around_edges(runtime: Runtime, workspace_id: str, plan: Plan, now: datetime) -> Seeded:
    seeded = Seeded(workspace_id)
    raw_edge = floor_hour(now - timedelta(days=PLAN_LIMITS[plan].raw_retention_days))
    for k in EDGE_OFFSETS:
        seeded.add_blob(runtime, raw_edge + k * HOUR)
        seeded.add_blob(runtime, raw_edge + k * HOUR, quarantined=True)
    aggregate_edge = floor_hour(now - timedelta(days=AGGREGATE_RETENTION_DAYS))
    for k in AGGREGATE_EDGE_OFFSETS:
        seeded.add_rows(runtime, aggregate_edge + k * HOUR)
    return seeded


def purges(reports: list[Any], workspace_id: str) -> list[PurgeReport]:
    return [r for r in reports if isinstance(r, PurgeReport) and r.workspace_id == workspace_id]


# -- one run on every plan -------------------------------------------------------------------------------


def test_given_each_plan_when_retention_runs_then_exactly_what_left_each_window_goes_and_a_rerun_is_a_no_op(
    runtime: Runtime,
) -> None:
    seeded = {
        plan: seed_around_edges(runtime, runtime.new_workspace(plan).workspace.workspace_id, plan, NOW)
        for plan in Plan
    }
    retention = Retention.from_services(runtime.services)

    reports = retention.run(now=NOW)

    for plan, workspace in seeded.items():
        expected = expected_after_one_run(workspace, plan, NOW)
        assert state_of(observed(runtime, workspace)) == state_of(expected), plan
        [report] = purges(reports, workspace.workspace_id)
        assert report.blobs_deleted == expected.blobs_deleted
        assert report.bytes_deleted == expected.blobs_deleted * len(PAYLOAD)
        assert report.aggregate_rows_deleted == expected.aggregate_rows_deleted
        assert report.ledger_rows_deleted == expected.ledger_rows_deleted
        entries = runtime.services.audit.read(workspace.workspace_id).entries
        assert [e.details for e in entries if e.action == AuditAction.RETENTION_PURGE] == [report.details()]
    again = retention.run(now=NOW)
    for plan, workspace in seeded.items():
        [report] = purges(again, workspace.workspace_id)
        assert (report.blobs_deleted, report.aggregate_rows_deleted, report.ledger_rows_deleted) == (0, 0, 0)
        assert state_of(observed(runtime, workspace)) == state_of(
            expected_after_one_run(workspace, plan, NOW)
        )


# -- overlapping and killed runs ---------------------------------------------------------------------------


def seed_many(runtime: Runtime) -> tuple[Seeded, Plan]:
    plan = Plan.FREE
    seeded = Seeded(runtime.new_workspace(plan).workspace.workspace_id)
    for days in range(5, 25):  # free keeps 3 of these days (the 10th, 9th and 8th of March)
        day = (NOW - timedelta(days=days)).date()
        for hour in (0, 11, 23):
            seeded.add_blob(runtime, datetime(day.year, day.month, day.day, hour, tzinfo=UTC))
    for hours in range(0, 24 * 5, 7):  # 7 hours outside the 390 days, 11 inside
        seeded.add_rows(runtime, NOW - timedelta(days=AGGREGATE_RETENTION_DAYS + 2) + timedelta(hours=hours))
    return seeded, plan


def own_retention(runtime: Runtime, *, batch_rows: int) -> tuple[Retention, Database]:
    """A retention with connections of its own, as a second function instance would have."""
    database = Database.open(runtime.dialect, runtime.sql_connection)
    raw_store = BlobRawStore(blob_service(runtime.storage_connection_string))
    retention = replace(
        Retention.from_services(runtime.services),
        raw_days=raw_store,
        containers=raw_store,
        database=database,
        batch_rows=batch_rows,
    )
    return retention, database


def test_given_two_overlapping_runs_then_the_state_is_one_clean_run_s_and_nothing_is_counted_twice(
    runtime: Runtime,
) -> None:
    seeded, plan = seed_many(runtime)
    expected = expected_after_one_run(seeded, plan, NOW)
    instances = [own_retention(runtime, batch_rows=3) for _ in range(2)]

    try:
        results = run_together(2, lambda i: instances[i][0].run(now=NOW))
    finally:
        for _, database in instances:
            database.close()

    assert state_of(observed(runtime, seeded)) == state_of(expected)
    reports = [r for result in results for r in purges(result, seeded.workspace_id)]
    assert sum(r.blobs_deleted for r in reports) == expected.blobs_deleted
    assert sum(r.aggregate_rows_deleted for r in reports) == expected.aggregate_rows_deleted
    assert sum(r.ledger_rows_deleted for r in reports) == expected.ledger_rows_deleted


@dataclass
class DyingRawDays:
    """The real store until `deletions` days have been deleted; then the process dies."""

    real: RawDays
    deletions: int

    def list_raw_days(self, workspace_id: str, *, before: date | None = None) -> list[date]:
        return self.real.list_raw_days(workspace_id, before=before)

    def list_raw_day_names(self, workspace_id: str, day: date) -> list[str]:
        return self.real.list_raw_day_names(workspace_id, day)

    def delete_raw_day(self, workspace_id: str, day: date) -> DeletedBlobs:
        if self.deletions == 0:
            raise Killed
        self.deletions -= 1
        return self.real.delete_raw_day(workspace_id, day)


@contextlib.contextmanager
def dying_transactions(database: Database, monkeypatch: pytest.MonkeyPatch, *, after: int) -> Iterator[None]:
    """The database's transactions commit as usual until `after` of them have; then the process dies."""
    real = database._transaction
    count = itertools.count()

    @contextlib.contextmanager
    def transaction() -> Iterator[Any]:
        if next(count) >= after:
            raise Killed
        with real() as cursor:
            yield cursor

    monkeypatch.setattr(database, "_transaction", transaction)
    try:
        yield
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("where", ["among raw days", "among SQL batches"])
def test_given_a_run_killed_half_way_when_the_next_run_comes_then_the_state_is_one_clean_run_s(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    seeded, plan = seed_many(runtime)
    expected = expected_after_one_run(seeded, plan, NOW)
    retention, database = own_retention(runtime, batch_rows=3)
    workspace = runtime.services.registry.get_workspace(seeded.workspace_id)

    try:
        if where == "among raw days":
            with pytest.raises(Killed):
                replace(retention, raw_days=DyingRawDays(retention.raw_days, deletions=5)).purge(
                    workspace, now=NOW
                )
            assert runtime.blobs(seeded.workspace_id) != expected.blobs  # it did stop part way
        else:
            # usage_hourly's 7 rows go in 3 batches and an empty one; the run dies in perf_hourly's second.
            with dying_transactions(database, monkeypatch, after=5), pytest.raises(Killed):
                retention.purge(workspace, now=NOW)
            assert runtime.blobs(seeded.workspace_id) == expected.blobs
            hours = observed(runtime, seeded).aggregate_hours
            assert hours["usage_hourly"] == expected.aggregate_hours["usage_hourly"]
            assert hours["perf_hourly"] != expected.aggregate_hours["perf_hourly"]
        # Killed anywhere, no blob still stored has lost its ledger row.
        stored = set(runtime.blobs(seeded.workspace_id))
        assert {n for n in seeded.ledger if n in stored} <= set(observed(runtime, seeded).ledger)

        retention.run(now=NOW)
    finally:
        database.close()

    assert state_of(observed(runtime, seeded)) == state_of(expected)


# -- listing day prefixes: the cost follows what is deleted ------------------------------------------------


def upload_days(service: BlobServiceClient, workspace_id: str, days: list[date]) -> None:
    container = service.get_container_client(f"ws-{workspace_id}")
    for day in days:
        container.upload_blob(name_at(datetime(day.year, day.month, day.day, 5, tzinfo=UTC)), PAYLOAD)


def test_given_10_or_100_kept_days_when_listing_the_expired_ones_then_the_same_list_requests_are_made(
    azurite_connection_string: str,
) -> None:
    cutoff = date(2024, 3, 10)
    expired = [date(2023, 12, 30), date(2024, 1, 2), date(2024, 3, 1), date(2024, 3, 9)]
    requests: list[str] = []
    service = blob_service(
        azurite_connection_string, raw_request_hook=lambda r: requests.append(r.http_request.url)
    )
    store = BlobRawStore(service)
    counts = []
    for kept in (10, 100):
        workspace_id = str(uuid.uuid4())
        store.create_workspace_container(workspace_id)
        upload_days(service, workspace_id, expired + [cutoff + timedelta(days=i) for i in range(kept)])
        requests.clear()

        assert store.list_raw_days(workspace_id, before=cutoff) == expired

        counts.append(sum("comp=list" in url for url in requests))
    assert counts[0] == counts[1]


def test_given_days_across_years_and_strays_when_listing_before_a_day_then_only_earlier_days_are_listed(
    azurite_connection_string: str,
) -> None:
    service = blob_service(azurite_connection_string)
    store = BlobRawStore(service)
    workspace_id = str(uuid.uuid4())
    store.create_workspace_container(workspace_id)
    upload_days(
        service, workspace_id, [date(2023, 12, 31), date(2024, 2, 28), date(2024, 2, 29), date(2025, 1, 1)]
    )
    container = service.get_container_client(f"ws-{workspace_id}")
    container.upload_blob(quarantine_name(name_at(datetime(2024, 1, 15, tzinfo=UTC))), PAYLOAD)
    for stray in ("raw/2024/02/x/00/X/a.json.gz", "raw/2024-02/01/00/X/b.json.gz", "raw/readme.txt"):
        container.upload_blob(stray, b"x")

    assert store.list_raw_days(workspace_id, before=date(2024, 2, 29)) == [
        date(2023, 12, 31),
        date(2024, 1, 15),
        date(2024, 2, 28),
    ]
    assert store.list_raw_days(workspace_id, before=date(2024, 3, 1))[-1] == date(2024, 2, 29)
    assert store.list_raw_days(str(uuid.uuid4()), before=date(2024, 3, 1)) == []


# -- the SQL statements ---------------------------------------------------------------------------------


def test_given_rows_of_two_workspaces_when_purging_in_batches_then_only_that_workspace_s_older_rows_go(
    runtime: Runtime,
) -> None:
    database = runtime.services.database
    mine, other = Seeded(str(uuid.uuid4())), Seeded(str(uuid.uuid4()))
    edge = datetime(2024, 1, 1, 12, tzinfo=UTC)
    for seeded in (mine, other):
        for k in range(-5, 2):
            seeded.add_rows(runtime, edge + k * HOUR)

    assert database.purge_aggregates(mine.workspace_id, before=edge, batch_rows=2) == 4 * 5
    assert database.purge_ledger(mine.workspace_id, before=edge.date(), batch_rows=2) == 0  # same day
    assert database.purge_ledger(mine.workspace_id, before=date(2024, 1, 2), batch_rows=2) == 7

    assert [r.hour for r in database.list_usage(mine.workspace_id)] == [edge, edge + HOUR]
    assert len(database.list_usage(other.workspace_id)) == 7
    assert all(database.blob_processed(other.workspace_id, n) for n in other.ledger)


@pytest.mark.parametrize(
    "name", ["purge_usage", "purge_perf", "purge_events", "purge_syslog", "purge_ledger"]
)
def test_given_a_tsql_purge_then_it_deletes_top_n_of_one_workspace_through_a_cte(name: str) -> None:
    text = statement(SqlDialect.TSQL, name).text

    parsed = sqlglot.parse_one(text, read="tsql")

    assert isinstance(parsed, exp.Delete)
    [cte] = parsed.find_all(exp.CTE)
    select = cte.this
    assert isinstance(select, exp.Select) and select.args.get("limit") is not None  # TOP (n)
    assert "workspace_id = CAST(? AS VARCHAR(36))" in select.sql(dialect="tsql")
    assert parsed.this.name == cte.alias


# -- tenant removal ----------------------------------------------------------------------------------------


def populate(runtime: Runtime, workspace_id: str) -> Seeded:
    seeded = Seeded(workspace_id)
    now = datetime.now(UTC)
    seeded.add_blob(runtime, floor_hour(now))
    seeded.add_blob(runtime, floor_hour(now), quarantined=True)
    seeded.add_rows(runtime, floor_hour(now))
    runtime.services.agents.create_agent(
        Agent(
            workspace_id=workspace_id,
            agent_id=str(uuid.uuid4()),
            thumbprint=uuid.uuid4().hex,
            certificate_pem="-----BEGIN CERTIFICATE-----",
            not_before=now,
            not_after=now + timedelta(days=365),
            state=AgentState.ACTIVE,
            registered_at=now,
        )
    )
    runtime.services.dcrs.create_rule(
        DataCollectionRule(
            immutable_id=new_immutable_id(),
            workspace_id=workspace_id,
            streams=("Custom-App_CL",),
            principals=(str(uuid.uuid4()),),
            created_at=now,
        )
    )
    return seeded


def assert_intact(runtime: Runtime, seeded: Seeded) -> None:
    workspace_id = seeded.workspace_id
    assert runtime.blobs(workspace_id) == sorted(seeded.blobs)
    assert len(runtime.services.database.list_usage(workspace_id)) == 1
    assert all(runtime.services.database.blob_processed(workspace_id, n) for n in seeded.ledger)
    for name in all_secret_names(workspace_id):
        runtime.services.secrets.get_secret(name)
    assert len(runtime.services.agents.list_agents(workspace_id)) == 1
    assert len(runtime.services.dcrs.list_rules(workspace_id)) == 1
    runtime.services.registry.get_workspace(workspace_id)


def assert_removed(runtime: Runtime, seeded: Seeded) -> None:
    workspace_id = seeded.workspace_id
    assert not runtime.blob_service.get_container_client(f"ws-{workspace_id}").exists()
    database = runtime.services.database
    assert (database.list_usage(workspace_id), database.list_perf(workspace_id)) == ([], [])
    assert (database.list_events(workspace_id), database.list_syslog(workspace_id)) == ([], [])
    assert not any(database.blob_processed(workspace_id, n) for n in seeded.ledger)
    for name in all_secret_names(workspace_id):
        with pytest.raises(NotFound):
            runtime.services.secrets.get_secret(name)
    assert runtime.services.agents.list_agents(workspace_id) == []
    assert runtime.services.dcrs.list_rules(workspace_id) == []
    with pytest.raises(WorkspaceNotFound):
        runtime.services.registry.get_workspace(workspace_id)


def backdate_deletion(runtime: Runtime, workspace_id: str, *, by: timedelta) -> None:
    registry = runtime.services.registry
    workspace = registry.get_workspace(workspace_id)
    assert workspace.deleted_at is not None
    registry.update_workspace(replace(workspace, deleted_at=workspace.deleted_at - by))


def test_given_a_deleted_workspace_then_ingestion_is_refused_now_and_its_data_goes_after_grace_not_before(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    deleted = populate(runtime, runtime.workspace_id)
    kept = populate(runtime, runtime.new_workspace().workspace.workspace_id)
    grace = timedelta(days=runtime.services.settings.workspace_delete_grace_days)

    assert sluice(["workspace", "delete", runtime.workspace_id, "--json"]) == 0
    removal_due = datetime.fromisoformat(json.loads(capsys.readouterr().out)["removal_due"])
    response = ingest_http.main(
        signed_request(
            workspace_id=runtime.workspace_id, key_b64=runtime.workspace.primary_key, body=b'{"a":1}'
        )
    )
    assert response.status_code == 403 and b"InactiveCustomer" in response.get_body()

    Retention.from_services(runtime.services).run(now=removal_due - timedelta(seconds=1))
    assert_intact(runtime, deleted)

    backdate_deletion(runtime, runtime.workspace_id, by=grace)
    retention_timer.main(timer_request())

    assert_removed(runtime, deleted)
    assert_intact(runtime, kept)
    actions = [e.action for e in runtime.services.audit.read(runtime.workspace_id).entries]
    assert AuditAction.WORKSPACE_DELETE in actions and actions[-1] == AuditAction.WORKSPACE_REMOVE
    assert sluice(["audit", "verify", "--workspace", runtime.workspace_id]) == 0


@dataclass
class DyingSecrets:
    real: Any
    deaths: int = 1

    def delete_secret(self, name: str) -> None:
        if self.deaths:
            self.deaths -= 1
            raise Killed
        self.real.delete_secret(name)


def test_given_a_removal_killed_half_way_when_the_next_run_comes_then_it_is_finished(
    runtime: Runtime,
) -> None:
    seeded = populate(runtime, runtime.workspace_id)
    assert sluice(["workspace", "delete", runtime.workspace_id]) == 0
    backdate_deletion(runtime, runtime.workspace_id, by=timedelta(days=365))
    retention = Retention.from_services(runtime.services)

    with pytest.raises(Killed):
        replace(retention, secrets=DyingSecrets(retention.secrets)).run(now=datetime.now(UTC))
    assert runtime.services.registry.get_workspace(runtime.workspace_id).state is WorkspaceState.DELETED
    retention.run(now=datetime.now(UTC))

    assert_removed(runtime, seeded)


def test_given_a_deleted_workspace_when_restored_within_grace_then_active_and_after_grace_refused(
    sqlite_runtime: Runtime,
) -> None:
    runtime = sqlite_runtime
    seeded = populate(runtime, runtime.workspace_id)
    assert sluice(["workspace", "delete", runtime.workspace_id]) == 0

    assert sluice(["workspace", "restore", runtime.workspace_id]) == 0

    workspace = runtime.services.registry.get_workspace(runtime.workspace_id)
    assert (workspace.state, workspace.deleted_at) == (WorkspaceState.ACTIVE, None)
    actions = [e.action for e in runtime.services.audit.read(runtime.workspace_id).entries]
    assert actions[-2:] == [AuditAction.WORKSPACE_DELETE, AuditAction.WORKSPACE_RESTORE]
    Retention.from_services(runtime.services).run(now=datetime.now(UTC) + timedelta(days=15))
    assert_intact(runtime, seeded)

    assert sluice(["workspace", "delete", runtime.workspace_id]) == 0
    backdate_deletion(runtime, runtime.workspace_id, by=timedelta(days=15))
    with pytest.raises(SystemExit, match="grace period ended"):
        sluice(["workspace", "restore", runtime.workspace_id])
    assert runtime.services.registry.get_workspace(runtime.workspace_id).state is WorkspaceState.DELETED


@dataclass
class Interrupted:
    """The registry retention sees, with an operator's command run right after one of its calls."""

    real: WorkspaceRegistry
    after: str  # "get_workspace" or "update_workspace"
    command: list[str]
    exits: list[object] = field(default_factory=list)

    def get_workspace(self, workspace_id: str) -> Workspace:
        return self._then(self.real.get_workspace(workspace_id), "get_workspace")

    def update_workspace(self, workspace: Workspace) -> Workspace:
        return self._then(self.real.update_workspace(workspace), "update_workspace")

    def delete_workspace(self, workspace: Workspace) -> None:
        self.real.delete_workspace(workspace)

    def _then(self, result: Workspace, call: str) -> Workspace:
        if call == self.after and not self.exits:
            try:
                self.exits.append(sluice(self.command))
            except SystemExit as stopped:
                self.exits.append(stopped.code)
        return result


def deleted_recently(runtime: Runtime) -> tuple[Seeded, datetime]:
    """A populated workspace deleted now (restorable), and an instant at which its removal is due."""
    seeded = populate(runtime, runtime.new_workspace().workspace.workspace_id)
    assert sluice(["workspace", "delete", seeded.workspace_id]) == 0
    grace = timedelta(days=runtime.services.settings.workspace_delete_grace_days)
    return seeded, datetime.now(UTC) + grace + HOUR


def test_given_a_restore_landing_after_the_removal_s_read_then_the_claim_fails_and_nothing_is_removed(
    sqlite_runtime: Runtime,
) -> None:
    runtime = sqlite_runtime
    seeded, due = deleted_recently(runtime)
    restore = Interrupted(
        runtime.services.registry, "get_workspace", ["workspace", "restore", seeded.workspace_id]
    )
    retention = replace(Retention.from_services(runtime.services), registry=restore)

    assert retention.remove(seeded.workspace_id, now=due) is None

    assert restore.exits == [0]
    assert runtime.services.registry.get_workspace(seeded.workspace_id).state is WorkspaceState.ACTIVE
    assert_intact(runtime, seeded)


def test_given_a_restore_landing_after_the_removal_s_claim_then_it_is_refused_and_the_removal_finishes(
    sqlite_runtime: Runtime,
) -> None:
    runtime = sqlite_runtime
    seeded, due = deleted_recently(runtime)
    restore = Interrupted(
        runtime.services.registry, "update_workspace", ["workspace", "restore", seeded.workspace_id]
    )
    retention = replace(Retention.from_services(runtime.services), registry=restore)

    assert retention.remove(seeded.workspace_id, now=due) is not None

    [refusal] = restore.exits
    assert "is being removed" in str(refusal)
    assert_removed(runtime, seeded)
    actions = [e.action for e in runtime.services.audit.read(seeded.workspace_id).entries]
    assert AuditAction.WORKSPACE_RESTORE not in actions and actions[-1] == AuditAction.WORKSPACE_REMOVE


def test_given_a_restore_racing_the_removal_then_exactly_one_of_them_takes_effect(
    sqlite_runtime: Runtime,
) -> None:
    runtime = sqlite_runtime
    seeded, due = deleted_recently(runtime)
    retention = Retention.from_services(runtime.services)

    def act(index: int) -> object:
        if index == 0:
            return retention.remove(seeded.workspace_id, now=due)
        try:
            return sluice(["workspace", "restore", seeded.workspace_id])
        except SystemExit as refused:
            return str(refused.code)

    removal, restore = run_together(2, act)

    if removal is None:
        assert restore == 0
        assert runtime.services.registry.get_workspace(seeded.workspace_id).state is WorkspaceState.ACTIVE
        assert_intact(runtime, seeded)
    else:
        assert "is being removed" in str(restore)
        assert_removed(runtime, seeded)


# -- daily counters ----------------------------------------------------------------------------------------


def test_given_daily_counters_around_the_cutoff_when_purging_then_older_ones_go_and_others_stay(
    sqlite_runtime: Runtime,
) -> None:
    runtime = sqlite_runtime
    counters = TableDailyCounters(table_service(runtime.services.settings.storage))
    workspace = runtime.services.registry.get_workspace(runtime.workspace_id)
    other = runtime.new_workspace().workspace.workspace_id
    cutoff = (NOW - timedelta(days=COUNTER_RETENTION_DAYS)).date()
    kept = [NOW.date(), cutoff + timedelta(days=1), cutoff]
    expired = [cutoff - timedelta(days=1), cutoff - timedelta(days=40), date(2022, 12, 31)]
    for workspace_id, day in [*((workspace.workspace_id, d) for d in kept + expired), (other, expired[0])]:
        assert counters.compare_and_set(workspace_id, day, expected=NO_COUNT, bytes=7, op_id="seed")
    retention = Retention.from_services(runtime.services)

    first = retention.purge(workspace, now=NOW)
    second = retention.purge(workspace, now=NOW)

    assert [counters.read(workspace.workspace_id, d).bytes for d in kept] == [7, 7, 7]
    assert [counters.read(workspace.workspace_id, d) for d in expired] == [NO_COUNT] * 3
    assert counters.read(other, expired[0]).bytes == 7
    assert (first.counters_deleted, second.counters_deleted) == (3, 0)
    audited = [e.details for e in runtime.services.audit.read(workspace.workspace_id).entries][-2:]
    assert [d["counters_deleted"] for d in audited] == [3, 0]
    assert audited[0]["counters_kept_from"] == cutoff.isoformat()


# -- client-assertion ids and data collection rules ----------------------------------------------------------


def claim_assertion_ids(runtime: Runtime, workspace_id: str, expiries: dict[str, datetime]) -> None:
    guard = TableReplayGuard(table_service(runtime.services.settings.storage))
    for token_id, expires_at in expiries.items():
        assert guard.claim_once(workspace_id, token_id, expires_at=expires_at)


def assertion_ids(runtime: Runtime, workspace_id: str) -> list[str]:
    """The workspace's client-assertion ids, read with the SDK."""
    table = table_service(runtime.services.settings.storage).get_table_client(ASSERTION_IDS_TABLE)
    return sorted(
        e["RowKey"] for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": workspace_id})
    )


def test_given_assertion_ids_around_now_when_purging_then_only_the_workspace_s_expired_go_and_a_rerun_none(
    sqlite_runtime: Runtime,
) -> None:
    runtime = sqlite_runtime
    workspace = runtime.services.registry.get_workspace(runtime.workspace_id)
    other = runtime.new_workspace().workspace.workspace_id
    claim_assertion_ids(
        runtime,
        workspace.workspace_id,
        {
            "expired-long-ago": NOW - timedelta(days=3),
            "expired-just-now": NOW - timedelta(milliseconds=1),
            "expiring-right-now": NOW,  # its assertion is still accepted at NOW
            "expiring-soon-1": NOW + timedelta(minutes=20),
        },
    )
    claim_assertion_ids(runtime, other, {"expired-long-ago": NOW - timedelta(days=3)})
    retention = Retention.from_services(runtime.services)

    first = retention.purge(workspace, now=NOW)
    second = retention.purge(workspace, now=NOW)

    assert assertion_ids(runtime, workspace.workspace_id) == ["expiring-right-now", "expiring-soon-1"]
    assert assertion_ids(runtime, other) == ["expired-long-ago"]
    assert (first.replay_ids_deleted, second.replay_ids_deleted) == (2, 0)
    audited = [e.details for e in runtime.services.audit.read(workspace.workspace_id).entries][-2:]
    assert [d["replay_ids_deleted"] for d in audited] == [2, 0]


def test_given_a_workspace_past_grace_when_removed_then_its_assertion_ids_and_rules_go_and_another_s_stay(
    sqlite_runtime: Runtime,
) -> None:
    runtime = sqlite_runtime
    removed, due = deleted_recently(runtime)
    kept = populate(runtime, runtime.workspace_id)
    expiries = {"expired-id-1": NOW, "live-id-1": datetime.now(UTC) + timedelta(minutes=20)}
    for seeded in (removed, kept):
        claim_assertion_ids(runtime, seeded.workspace_id, expiries)
    retention = Retention.from_services(runtime.services)

    report = retention.remove(removed.workspace_id, now=due)

    assert isinstance(report, RemovalReport)
    assert (report.replay_ids_deleted, report.data_collection_rules_deleted) == (2, 1)
    assert assertion_ids(runtime, removed.workspace_id) == []
    assert_removed(runtime, removed)
    assert assertion_ids(runtime, kept.workspace_id) == sorted(expiries)
    assert_intact(runtime, kept)
    [entry] = [
        e
        for e in runtime.services.audit.read(removed.workspace_id).entries
        if e.action == AuditAction.WORKSPACE_REMOVE
    ]
    assert (entry.details["replay_ids_deleted"], entry.details["data_collection_rules_deleted"]) == (2, 1)
    assert retention.remove(removed.workspace_id, now=due) is None


# -- sluice retention report --verify ---------------------------------------------------------------------


def report(workspace_id: str, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, Any]:
    code = sluice(["retention", "report", "--workspace", workspace_id, "--now", NOW.isoformat(), *flags])
    return code, capsys.readouterr().out


def test_given_seeded_violations_when_verifying_through_the_cli_then_each_is_listed_and_the_exit_is_1(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace_id = runtime.new_workspace(Plan.FREE).workspace.workspace_id
    seeded = Seeded(workspace_id)
    seeded.add_blob(runtime, NOW - timedelta(days=3))  # inside, present: fine
    seeded.add_blob(runtime, NOW - timedelta(days=30))  # raw day and ledger row outside
    seeded.add_rows(runtime, NOW - timedelta(days=400))  # aggregate rows outside
    missing = name_at(floor_hour(NOW - timedelta(days=2)))
    seeded.add_ledger_row(runtime, missing, NOW - timedelta(days=2))  # processed, inside, and gone
    counters = TableDailyCounters(table_service(runtime.services.settings.storage))
    for day in (NOW.date(), (NOW - timedelta(days=40)).date()):  # the second is too old
        assert counters.compare_and_set(workspace_id, day, expected=NO_COUNT, bytes=7, op_id="seed")
    claim_assertion_ids(runtime, workspace_id, {"old": NOW - timedelta(days=2), "live": NOW + HOUR})

    code, out = report(workspace_id, capsys, "--verify", "--json")

    assert code == 1
    [document] = json.loads(out)
    violations = document["violations"]
    assert f"raw day {(NOW - timedelta(days=30)).date()} is outside the 7-day window" in violations
    for table in ("usage_hourly", "perf_hourly", "events_hourly", "syslog_hourly"):
        assert f"1 {table} rows are older than 390 days" in violations
    assert "2 processed_blobs rows are of blobs outside the 7-day window" in violations
    assert any(missing in v and v.startswith("2024-03-13: 1 processed blobs") for v in violations)
    assert "1 daily counters are older than 35 days" in violations
    assert "1 client assertion ids expired more than a run ago" in violations
    assert len(violations) == 9

    assert sluice(["retention", "run", "--now", NOW.isoformat()]) == 0
    capsys.readouterr()
    assert report(workspace_id, capsys, "--verify")[0] == 1  # the missing blob is still missing
    runtime.blob_service.get_container_client(f"ws-{workspace_id}").upload_blob(missing, PAYLOAD)

    code, out = report(workspace_id, capsys, "--verify")

    assert code == 0
    assert "verify: ok" in out
    assert f"workspace {workspace_id}: plan free, active" in out


def test_given_a_workspace_when_reporting_then_its_windows_and_holdings_are_printed(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace_id = runtime.new_workspace(Plan.STANDARD).workspace.workspace_id
    seeded = Seeded(workspace_id)
    seeded.add_blob(runtime, NOW - timedelta(days=40))
    seeded.add_blob(runtime, NOW - timedelta(days=1))

    code, out = report(workspace_id, capsys, "--json")

    assert code == 0
    [document] = json.loads(out)
    assert "violations" not in document
    held = {row["what"]: row for row in document["held"]}
    assert held["raw days"] == {
        "what": "raw days",
        "kept_from": "2024-02-14",
        "count": 2,
        "oldest": "2024-02-04",
        "outside": 1,
    }
    assert held["processed_blobs"]["count"] == 2 and held["processed_blobs"]["outside"] == 1
    assert held["usage_hourly"]["kept_from"] == "2023-02-19T02:00:00+00:00"


def test_given_a_future_instant_when_running_retention_from_the_cli_then_it_is_refused(
    runtime: Runtime,
) -> None:
    workspace_id = runtime.new_workspace(Plan.FREE).workspace.workspace_id
    Seeded(workspace_id).add_blob(runtime, datetime.now(UTC) - timedelta(days=1))
    tomorrow_week = (datetime.now(UTC) + timedelta(days=7)).isoformat()

    with pytest.raises(SystemExit, match="must not be in the future"):
        sluice(["retention", "run", "--now", tomorrow_week])

    assert len(list(runtime.blob_service.get_container_client(f"ws-{workspace_id}").list_blobs())) == 1


def test_given_an_operator_running_retention_then_the_purge_is_audited_as_that_operator(
    runtime: Runtime,
) -> None:
    workspace_id = runtime.new_workspace(Plan.FREE).workspace.workspace_id

    assert sluice(["retention", "run"]) == 0

    [entry] = [
        e
        for e in runtime.services.audit.read(workspace_id).entries
        if e.action == AuditAction.RETENTION_PURGE
    ]
    assert entry.actor.startswith("operator:")
