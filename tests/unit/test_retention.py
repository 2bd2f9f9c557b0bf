"""Retention rules on in-memory ports: nothing inside a window is ever deleted, everything wholly outside
it is after one run, a killed run is finished by the next, deleted workspaces go after their grace
period and not before, and verify finds what a run should have removed or must have kept."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.agents import Agent, AgentState
from shared.audit import AuditAction, AuditLog
from shared.dcrs import DataCollectionRule, new_immutable_id
from shared.diagnostics import CredentialKind, DiagnosticsSource, DiagnosticsTable, Position, sas_secret_name
from shared.errors import AuthorizationFailed, RetentionIncomplete, StorageUnavailable
from shared.ids import RawBlobName
from shared.plans import AGGREGATE_RETENTION_DAYS, PLAN_LIMITS, Plan, PlanLimits
from shared.rawstore import quarantine_name
from shared.retention import COUNTER_RETENTION_DAYS, Retention, aggregates_from, day_ranges, raw_from
from shared.sharedkey import MAX_CLOCK_SKEW
from shared.workspaces import (
    Workspace,
    WorkspaceState,
    all_secret_names,
    mark_deleted,
    removal_due_at,
    restore_deleted,
    start_removal,
)
from tests.support.auth_stacks import AuthStack, assertion, bearer
from tests.unit.fakes import (
    AGGREGATE_TABLES,
    Kill,
    Killed,
    MemoryAgents,
    MemoryAssertionIds,
    MemoryAuditStore,
    MemoryCounters,
    MemoryDataCollectionRules,
    MemoryRawStore,
    MemoryRegistry,
    MemoryRetentionDatabase,
    MemorySecrets,
    MemorySources,
)

GRACE = timedelta(days=14)
HOUR = timedelta(hours=1)
CREATED = datetime(2020, 1, 1, tzinfo=UTC)
ZONES = [UTC, *(timezone(timedelta(minutes=m)) for m in (-720, -300, 330, 840))]


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class World:
    """Every port retention touches, in memory, and what was put in them."""

    store: MemoryRawStore = field(default_factory=MemoryRawStore)
    database: MemoryRetentionDatabase = field(default_factory=MemoryRetentionDatabase)
    registry: MemoryRegistry = field(default_factory=MemoryRegistry)
    secrets: MemorySecrets = field(default_factory=MemorySecrets)
    agents: MemoryAgents = field(default_factory=MemoryAgents)
    assertion_ids: MemoryAssertionIds = field(default_factory=MemoryAssertionIds)
    counters: MemoryCounters = field(default_factory=MemoryCounters)
    sources: MemorySources = field(default_factory=MemorySources)
    dcrs: MemoryDataCollectionRules = field(default_factory=MemoryDataCollectionRules)
    audit_store: MemoryAuditStore = field(default_factory=MemoryAuditStore)

    def retention(
        self, *, kill: Kill | None = None, plans: Mapping[Plan, PlanLimits] = PLAN_LIMITS
    ) -> Retention:
        self.store.kill = self.database.kill = kill
        return Retention(
            plans=plans,
            registry=self.registry,
            raw_days=self.store,
            containers=self.store,
            database=self.database,
            secrets=self.secrets,
            agents=self.agents,
            assertion_ids=self.assertion_ids,
            counters=self.counters,
            sources=self.sources,
            dcrs=self.dcrs,
            audit=AuditLog(self.audit_store, clock=lambda: datetime.now(UTC)),
            delete_grace=GRACE,
            batch_rows=2,
        )

    def add_workspace(self, plan: Plan = Plan.FREE, *, deleted_at: datetime | None = None) -> str:
        workspace = Workspace(
            workspace_id=new_id(), plan=plan, state=WorkspaceState.ACTIVE, created_at=CREATED
        )
        if deleted_at is not None:
            workspace = mark_deleted(workspace, now=deleted_at)
        self.registry.create_workspace(workspace)
        self.store.create_workspace_container(workspace.workspace_id)
        for name in all_secret_names(workspace.workspace_id):
            self.secrets.set_secret(name, "c2VjcmV0")
        self.agents.create_agent(
            Agent(
                workspace_id=workspace.workspace_id,
                agent_id=new_id(),
                thumbprint=uuid.uuid4().hex,
                certificate_pem="-----BEGIN CERTIFICATE-----",
                not_before=CREATED,
                not_after=CREATED + timedelta(days=3650),
                state=AgentState.ACTIVE,
                registered_at=CREATED,
            )
        )
        self.counters.days[workspace.workspace_id] = {NOW.date()}
        source_id = new_id()
        self.secrets.set_secret(sas_secret_name(source_id), "sv=2019-02-02&sp=rl&sig=x")
        self.sources.create_source(
            DiagnosticsSource(
                source_id=source_id,
                workspace_id=workspace.workspace_id,
                table_endpoint="https://vm.table.core.windows.net",
                tables=(DiagnosticsTable.PERF,),
                credential_kind=CredentialKind.SAS,
                credential_secret=sas_secret_name(source_id),
                created_at=CREATED,
            ),
            start=Position(partition_key="0", row_key=""),
        )
        self.dcrs.create_rule(
            DataCollectionRule(
                immutable_id=new_immutable_id(),
                workspace_id=workspace.workspace_id,
                streams=("Custom-App_CL",),
                principals=(new_id(),),
                created_at=CREATED,
            )
        )
        return workspace.workspace_id

    def add_blob(self, workspace_id: str, hour: datetime, *, quarantined: bool = False) -> str:
        """A raw blob of that hour; processed (a ledger row) unless it was quarantined instead."""
        name = str(RawBlobName(hour=hour, log_type="Syslog", blob_id=uuid.uuid4().hex))
        if quarantined:
            self.store.put_raw(workspace_id, quarantine_name(name), b"gz", metadata={})
        else:
            self.store.put_raw(workspace_id, name, b"gzip", metadata={})
            self.database.ledger.add((workspace_id, name))
        return name

    def add_rows(self, workspace_id: str, hour: datetime) -> None:
        for key, table in enumerate(AGGREGATE_TABLES):
            self.database.aggregates.add((table, workspace_id, hour, key))

    def state(self) -> tuple[object, ...]:
        return (
            sorted(self.store.blobs),
            sorted(self.store.containers),
            sorted(self.database.aggregates),
            sorted(self.database.ledger),
            sorted(self.registry.workspaces),
            sorted(self.secrets.values),
            sorted(self.agents.agents),
            sorted(self.assertion_ids.seen),
            sorted(self.dcrs.rules),
        )


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# -- strategies: instants anywhere, and near UTC midnight; hours near each window's edge ---------------

near_midnight = st.builds(
    lambda day, seconds: datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=seconds),
    st.dates(min_value=date(2022, 1, 1), max_value=date(2030, 12, 31)),
    st.integers(min_value=-3 * 3600, max_value=3 * 3600),
)
anywhere = st.datetimes(
    min_value=datetime(2022, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
moments = st.builds(
    lambda moment, zone: moment.astimezone(zone), st.one_of(near_midnight, anywhere), st.sampled_from(ZONES)
)
# Hours from the window's edge: mostly within three days of it, some far on either side.
edge_offsets = st.lists(
    st.one_of(st.integers(min_value=-72, max_value=72), st.integers(min_value=-24 * 800, max_value=24)),
    max_size=12,
)


@given(
    plan=st.sampled_from(list(Plan)),
    now=moments,
    raw_offsets=edge_offsets,
    quarantined_offsets=edge_offsets,
    aggregate_offsets=edge_offsets,
)
@settings(max_examples=300, deadline=None)
def test_given_any_plan_and_instant_when_one_run_then_everything_inside_is_kept_and_everything_outside_goes(
    plan: Plan,
    now: datetime,
    raw_offsets: list[int],
    quarantined_offsets: list[int],
    aggregate_offsets: list[int],
) -> None:
    world = World()
    workspace_id = world.add_workspace(plan)
    raw_window = timedelta(days=PLAN_LIMITS[plan].raw_retention_days)
    aggregate_window = timedelta(days=AGGREGATE_RETENTION_DAYS)
    raw_edge, aggregate_edge = floor_hour(now - raw_window), floor_hour(now - aggregate_window)
    processed = {world.add_blob(workspace_id, raw_edge + k * HOUR): raw_edge + k * HOUR for k in raw_offsets}
    quarantined = {
        quarantine_name(world.add_blob(workspace_id, raw_edge + k * HOUR, quarantined=True)): raw_edge
        + k * HOUR
        for k in quarantined_offsets
    }
    for k in aggregate_offsets:
        world.add_rows(workspace_id, aggregate_edge + k * HOUR)
    rows_before = set(world.database.aggregates)

    world.retention().run(now=now)

    def day_inside(hour: datetime) -> bool:
        # Stated from the definition, not from the code: a day stays while its end is inside the window.
        day_end = datetime(hour.year, hour.month, hour.day, tzinfo=UTC) + timedelta(days=1)
        return day_end > now - raw_window

    kept_blobs = {name for (_, name) in world.store.blobs}
    assert kept_blobs == {n for n, h in (processed | quarantined).items() if day_inside(h)}
    assert {name for (_, name) in world.database.ledger} == {n for n, h in processed.items() if day_inside(h)}
    assert world.database.aggregates == {r for r in rows_before if r[2] + HOUR > now - aggregate_window}


@given(
    plan=st.sampled_from(list(Plan)),
    now=moments,
    offsets=edge_offsets,
    kill_after=st.integers(min_value=0, max_value=60),
)
@settings(max_examples=150, deadline=None)
def test_given_a_run_killed_after_any_number_of_deletions_when_run_again_then_state_is_one_clean_run(
    plan: Plan, now: datetime, offsets: list[int], kill_after: int
) -> None:
    world = World()
    active = world.add_workspace(plan)
    removable = world.add_workspace(plan, deleted_at=now - GRACE - HOUR)
    edge = floor_hour(now - timedelta(days=PLAN_LIMITS[plan].raw_retention_days))
    for workspace_id in (active, removable):
        for k in offsets:
            world.add_blob(workspace_id, edge + k * HOUR)
            world.add_blob(workspace_id, edge + k * HOUR, quarantined=True)
            world.add_rows(
                workspace_id, floor_hour(now - timedelta(days=AGGREGATE_RETENTION_DAYS)) + k * HOUR
            )
    clean = copy.deepcopy(world)
    clean.retention().run(now=now)

    with contextlib.suppress(Killed):
        world.retention(kill=Kill(deletions=kill_after)).run(now=now)
    # Wherever it died, no blob still stored lost its ledger row (a redelivery would count it again).
    stored = {key for key in world.store.blobs if not key[1].startswith("quarantine/")}
    assert stored <= world.database.ledger
    world.retention().run(now=now)

    assert world.state() == clean.state()


def test_given_cutoff_at_midnight_then_the_boundary_day_is_kept_until_wholly_outside() -> None:
    # Free keeps 7 days: at 2026-11-22 00:00, 11-14 ended at 11-15 00:00 = now - 7 days exactly.
    assert raw_from(datetime(2026, 11, 22, tzinfo=UTC), retention_days=7) == date(2026, 11, 15)
    assert raw_from(datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC), retention_days=7) == date(2026, 11, 14)
    # An instant carrying another offset counts in UTC: 2026-11-22 01:00+02:00 is 11-21 23:00 UTC.
    assert raw_from(datetime(2026, 11, 22, 1, tzinfo=timezone(timedelta(hours=2))), retention_days=7) == date(
        2026, 11, 14
    )


def test_given_instants_around_an_hour_then_aggregates_are_kept_from_the_hour_that_has_not_ended() -> None:
    on_the_hour = datetime(2026, 11, 22, 2, tzinfo=UTC)
    assert aggregates_from(on_the_hour) == on_the_hour - timedelta(days=390)
    assert aggregates_from(on_the_hour + timedelta(minutes=59)) == on_the_hour - timedelta(days=390)


def test_given_days_with_gaps_then_ranges_collapse_consecutive_days() -> None:
    days = [
        date(2024, 1, 3),
        date(2024, 1, 1),
        date(2024, 1, 2),
        date(2024, 2, 29),
        date(2024, 3, 1),
        date(2024, 5, 5),
    ]

    assert day_ranges(days) == ["2024-01-01/2024-01-03", "2024-02-29/2024-03-01", "2024-05-05"]
    assert day_ranges([]) == []


def test_given_a_run_then_each_workspace_s_purge_report_is_audited_with_counts() -> None:
    world = World()
    workspace_id = world.add_workspace(Plan.FREE)
    now = datetime(2026, 11, 22, 2, tzinfo=UTC)
    for day in (1, 2, 5, 20):
        world.add_blob(workspace_id, datetime(2026, 11, day, 13, tzinfo=UTC))
    world.add_rows(workspace_id, now - timedelta(days=400))
    world.counters.days[workspace_id].add(CREATED.date())

    world.retention().run(now=now)

    [entry] = world.audit_store.read(workspace_id).entries
    assert entry.action == AuditAction.RETENTION_PURGE
    assert entry.details == {
        "plan": "free",
        "raw_retention_days": 7,
        "raw_kept_from": "2026-11-15",
        "aggregates_kept_from": "2025-10-28T02:00:00+00:00",
        "counters_kept_from": "2026-10-18",
        "days_deleted": ["2026-11-01/2026-11-02", "2026-11-05"],
        "blobs_deleted": 3,
        "bytes_deleted": 3 * len(b"gzip"),
        "aggregate_rows_deleted": len(AGGREGATE_TABLES),
        "ledger_rows_deleted": 3,
        "counters_deleted": 1,  # the workspace's first day's, in 2020
        "replay_ids_deleted": 0,
    }


def test_given_daily_counters_around_the_cutoff_when_purging_then_older_days_go_and_a_rerun_is_a_no_op() -> (
    None
):
    world = World()
    workspace_id = world.add_workspace(Plan.PREMIUM)
    other = world.add_workspace(Plan.PREMIUM)
    now = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    cutoff = (now - timedelta(days=COUNTER_RETENTION_DAYS)).date()
    kept = {now.date(), cutoff, cutoff + timedelta(days=1)}
    world.counters.days[workspace_id] = {*kept, cutoff - timedelta(days=1), date(2025, 1, 1)}
    world.counters.days[other] = {cutoff - timedelta(days=1)}
    retention = world.retention()

    first = retention.purge(world.registry.get_workspace(workspace_id), now=now)
    second = retention.purge(world.registry.get_workspace(workspace_id), now=now)

    assert world.counters.days[workspace_id] == kept
    assert (first.counters_deleted, second.counters_deleted) == (2, 0)
    assert first.details()["counters_kept_from"] == cutoff.isoformat()
    assert world.counters.days[other] == {cutoff - timedelta(days=1)}


def test_given_assertion_ids_around_now_when_purging_then_only_the_workspace_s_expired_go_rerun_none() -> (
    None
):
    world = World()
    workspace_id = world.add_workspace(Plan.FREE)
    other = world.add_workspace(Plan.FREE)
    now = datetime(2026, 11, 22, 2, tzinfo=UTC)
    expiries = {
        "expired-long-ago": now - timedelta(days=3),
        "expired-just-now": now - timedelta(microseconds=1),
        "expiring-right-now": now,  # its assertion is still accepted at `now`
        "expiring-soon-1": now + timedelta(minutes=20),
    }
    for token_id, expires_at in expiries.items():
        world.assertion_ids.claim_once(workspace_id, token_id, expires_at=expires_at)
    world.assertion_ids.claim_once(other, "expired-long-ago", expires_at=now - timedelta(days=3))
    retention = world.retention()

    first = retention.purge(world.registry.get_workspace(workspace_id), now=now)
    second = retention.purge(world.registry.get_workspace(workspace_id), now=now)

    assert set(world.assertion_ids.seen) == {
        (other, "expired-long-ago"),
        (workspace_id, "expiring-right-now"),
        (workspace_id, "expiring-soon-1"),
    }
    assert (first.replay_ids_deleted, second.replay_ids_deleted) == (2, 0)
    audited = [e.details["replay_ids_deleted"] for e in world.audit_store.read(workspace_id).entries]
    assert audited == [2, 0]


def test_given_a_used_assertion_when_retention_deletes_its_id_then_a_replay_is_still_refused_as_expired() -> (
    None
):
    issued = datetime(2026, 11, 22, 2, tzinfo=UTC)
    auth = AuthStack(now=issued)
    agent = auth.enroll()
    token = assertion(agent, now=issued)  # expires 5 minutes after `issued`
    auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))
    world = World(assertion_ids=MemoryAssertionIds(seen=auth.replay.seen))
    workspace = Workspace(agent.workspace_id, Plan.FREE, WorkspaceState.ACTIVE, created_at=CREATED)
    last_accepted = issued + timedelta(minutes=5) + MAX_CLOCK_SKEW

    auth.now = last_accepted
    kept = world.retention().purge(workspace, now=auth.now)
    with pytest.raises(AuthorizationFailed, match="already used"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))
    auth.now = last_accepted + timedelta(seconds=1)
    deleted = world.retention().purge(workspace, now=auth.now)

    assert (kept.replay_ids_deleted, deleted.replay_ids_deleted) == (0, 1)
    with pytest.raises(AuthorizationFailed, match="has expired"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_a_failure_part_way_when_purging_then_what_went_is_audited_as_incomplete() -> None:
    world = World()
    workspace_id = world.add_workspace(Plan.FREE)
    now = datetime(2026, 11, 22, 2, tzinfo=UTC)
    world.add_blob(workspace_id, datetime(2026, 11, 1, tzinfo=UTC))
    world.add_rows(workspace_id, now - timedelta(days=400))
    world.database.purge_aggregates = _unavailable  # type: ignore[method-assign]

    with pytest.raises(Exception, match="Retention failed for 1 workspace"):
        world.retention().run(now=now)

    [entry] = world.audit_store.read(workspace_id).entries
    assert (entry.details["blobs_deleted"], entry.details["incomplete"]) == (1, "ServiceUnavailable")


def test_given_plans_overridden_by_the_operator_when_purging_then_their_window_applies() -> None:
    world = World()
    workspace_id = world.add_workspace(Plan.FREE)
    now = datetime(2026, 11, 22, 2, tzinfo=UTC)
    three_days_old = world.add_blob(workspace_id, now - timedelta(days=3))
    one_day_old = world.add_blob(workspace_id, now - timedelta(days=1))
    plans = {**PLAN_LIMITS, Plan.FREE: replace(PLAN_LIMITS[Plan.FREE], raw_retention_days=2)}

    world.retention(plans=plans).run(now=now)

    assert world.store.names(workspace_id) == [one_day_old]
    assert three_days_old not in world.store.names(workspace_id)


def _unavailable(*args: object, **kwargs: object) -> int:
    from shared.errors import DatabaseUnavailable

    raise DatabaseUnavailable("the database failed over")


# -- tenant removal ------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 22, 2, tzinfo=UTC)


def populated(world: World, *, deleted_at: datetime | None) -> str:
    workspace_id = world.add_workspace(Plan.PREMIUM, deleted_at=deleted_at)
    world.add_blob(workspace_id, NOW - timedelta(days=3))
    world.add_blob(workspace_id, NOW - timedelta(days=3), quarantined=True)
    world.add_rows(workspace_id, NOW - timedelta(days=3))
    return workspace_id


def test_given_a_deleted_workspace_within_grace_when_retention_runs_then_nothing_of_it_is_removed() -> None:
    world = World()
    workspace_id = populated(world, deleted_at=NOW - GRACE + HOUR)
    before = world.state()

    world.retention().run(now=NOW)

    assert world.state() == before
    assert world.registry.get_workspace(workspace_id).state is WorkspaceState.DELETED


def test_given_a_deleted_workspace_past_grace_when_retention_runs_then_all_but_its_audit_log_goes() -> None:
    world = World()
    kept = populated(world, deleted_at=None)
    removed = populated(world, deleted_at=NOW - GRACE)
    kept_names = world.store.names(kept)
    removed_sas = [source.credential_secret for source in world.sources.list_sources(removed)]

    world.retention().run(now=NOW)

    assert world.store.names(removed) == [] and removed not in world.store.containers
    assert not any(r[1] == removed for r in world.database.aggregates)
    assert not any(ws == removed for ws, _ in world.database.ledger)
    assert not any(name in world.secrets.values for name in all_secret_names(removed))
    assert world.agents.list_agents(removed) == []
    assert removed not in world.registry.workspaces
    [entry] = world.audit_store.read(removed).entries
    assert entry.action == AuditAction.WORKSPACE_REMOVE
    assert (entry.details["aggregate_rows_deleted"], entry.details["ledger_rows_deleted"]) == (4, 1)
    assert entry.details["agents_deleted"] == 1
    assert removed not in world.counters.days
    assert world.sources.list_sources(removed) == []
    assert removed_sas and not any(name in world.secrets.values for name in removed_sas)
    assert (entry.details["counters_deleted"], entry.details["diagnostics_sources_deleted"]) == (1, 1)
    assert world.dcrs.list_rules(removed) == [] and entry.details["data_collection_rules_deleted"] == 1
    # The other workspace is untouched.
    assert world.store.names(kept) == kept_names
    assert len(world.agents.list_agents(kept)) == 1
    assert kept in world.counters.days
    assert len(world.sources.list_sources(kept)) == 1
    assert len(world.dcrs.list_rules(kept)) == 1


def test_given_a_workspace_past_grace_when_removed_then_all_its_assertion_ids_go_and_nobody_else_s() -> None:
    world = World()
    kept = populated(world, deleted_at=None)
    removed = populated(world, deleted_at=NOW - GRACE)
    for workspace_id in (kept, removed):
        world.assertion_ids.claim_once(workspace_id, "expired-id", expires_at=NOW - timedelta(days=1))
        world.assertion_ids.claim_once(workspace_id, "live-id", expires_at=NOW + timedelta(minutes=20))

    reports = world.retention().run(now=NOW)

    assert set(world.assertion_ids.seen) == {(kept, "live-id")}
    removal, purge = (next(r for r in reports if r.workspace_id == ws) for ws in (removed, kept))
    assert (removal.replay_ids_deleted, purge.replay_ids_deleted) == (2, 1)
    [entry] = world.audit_store.read(removed).entries
    assert entry.details["replay_ids_deleted"] == 2


def test_given_a_removal_that_stops_part_way_then_what_went_is_audited_and_the_next_run_finishes() -> None:
    world = World()
    removed = populated(world, deleted_at=NOW - GRACE)
    delete_secret = world.secrets.delete_secret
    throttled = iter([StorageUnavailable("Key Vault throttled the request (429).")])

    def delete_secret_once_throttled(name: str) -> None:
        if (error := next(throttled, None)) is not None:
            raise error
        delete_secret(name)

    world.secrets.delete_secret = delete_secret_once_throttled  # type: ignore[method-assign]

    with pytest.raises(RetentionIncomplete):
        world.retention().run(now=NOW)
    world.retention().run(now=NOW)

    stopped, finished = world.audit_store.read(removed).entries
    assert (stopped.details["incomplete"], stopped.details["aggregate_rows_deleted"]) == (
        "ServiceUnavailable",
        4,
    )
    assert stopped.details["ledger_rows_deleted"] == 1
    assert "incomplete" not in finished.details
    assert removed not in world.registry.workspaces


def test_given_a_workspace_restored_after_the_list_was_read_when_removing_then_it_is_kept() -> None:
    world = World()
    workspace_id = populated(world, deleted_at=NOW - GRACE)
    retention = world.retention()
    restored = replace(
        world.registry.get_workspace(workspace_id), state=WorkspaceState.ACTIVE, deleted_at=None
    )
    world.registry.update_workspace(restored)

    assert retention.remove(workspace_id, now=NOW) is None
    assert world.store.names(workspace_id) != []


class RestoringRegistry(MemoryRegistry):
    """An operator's restore lands right after the removal's read, before its claim."""

    def get_workspace(self, workspace_id: str) -> Workspace:
        read = super().get_workspace(workspace_id)
        if read.state is WorkspaceState.DELETED:
            self.update_workspace(restore_deleted(read, now=NOW - GRACE, grace=GRACE))
        return read


def test_given_a_restore_landing_between_the_removal_s_read_and_its_claim_then_nothing_is_removed() -> None:
    world = World(registry=RestoringRegistry())
    workspace_id = populated(world, deleted_at=NOW - GRACE)
    before = world.state()

    assert world.retention().remove(workspace_id, now=NOW) is None

    assert world.state() == before
    assert world.registry.get_workspace(workspace_id).state is WorkspaceState.ACTIVE


def test_given_a_removal_claimed_when_restoring_then_refused_and_the_removal_finishes() -> None:
    world = World()
    workspace_id = populated(world, deleted_at=NOW - GRACE)
    claimed = world.registry.update_workspace(
        start_removal(world.registry.get_workspace(workspace_id), now=NOW)
    )

    with pytest.raises(ValueError, match="is being removed"):
        restore_deleted(claimed, now=NOW - GRACE, grace=GRACE)
    report = world.retention().remove(workspace_id, now=NOW + HOUR)

    assert report is not None and workspace_id not in world.registry.workspaces
    assert world.store.names(workspace_id) == []


def test_given_a_workspace_not_deleted_when_claiming_its_removal_then_refused() -> None:
    workspace = Workspace(new_id(), Plan.FREE, WorkspaceState.ACTIVE, created_at=CREATED)

    with pytest.raises(ValueError, match="is not deleted"):
        start_removal(workspace, now=NOW)


class ChangingRegistry(MemoryRegistry):
    """The entry changes right after the removal claimed it, keeping the claim (as a claim whose answer
    was lost and retried does)."""

    def update_workspace(self, workspace: Workspace) -> Workspace:
        written = super().update_workspace(workspace)
        if written.removal_started_at is not None:
            super().update_workspace(replace(written, plan=Plan.FREE))
        return written


def test_given_the_entry_changed_after_the_claim_when_removing_then_it_goes_at_its_new_version() -> None:
    world = World(registry=ChangingRegistry())
    workspace_id = populated(world, deleted_at=NOW - GRACE)

    [report] = world.retention().run(now=NOW)

    assert report.action is AuditAction.WORKSPACE_REMOVE
    assert workspace_id not in world.registry.workspaces
    assert world.store.names(workspace_id) == []


class OverlappingDeleteRegistry(MemoryRegistry):
    """An overlapping run touches the entry (so this run's delete is refused as changed) and then
    deletes it before this run reads it again."""

    def delete_workspace(self, workspace: Workspace) -> None:
        touched = super().update_workspace(self.workspaces[workspace.workspace_id])
        try:
            super().delete_workspace(workspace)
        finally:
            super().delete_workspace(touched)


def test_given_an_overlapping_run_deleting_the_entry_first_when_removing_then_the_removal_is_done() -> None:
    world = World(registry=OverlappingDeleteRegistry())
    workspace_id = populated(world, deleted_at=NOW - GRACE)

    [report] = world.retention().run(now=NOW)

    assert report.action is AuditAction.WORKSPACE_REMOVE
    assert workspace_id not in world.registry.workspaces


class ClaimingRegistry(MemoryRegistry):
    """An overlapping run claims the removal right after this run's read."""

    def get_workspace(self, workspace_id: str) -> Workspace:
        read = super().get_workspace(workspace_id)
        if read.removal_started_at is None:
            self.update_workspace(start_removal(read, now=NOW))
        return read


def test_given_an_overlapping_run_claiming_first_then_this_one_leaves_it_and_a_claimed_one_is_finished() -> (
    None
):
    world = World(registry=ClaimingRegistry())
    workspace_id = populated(world, deleted_at=NOW - GRACE)
    before = world.state()

    assert world.retention().remove(workspace_id, now=NOW) is None
    assert world.state() == before
    claimed = world.registry.get_workspace(workspace_id)
    assert world.retention().remove(workspace_id, now=NOW + HOUR) is not None

    assert claimed.removal_started_at == NOW and workspace_id not in world.registry.workspaces


def test_given_a_deleted_workspace_without_deletion_time_then_it_is_never_due() -> None:
    workspace = Workspace(new_id(), Plan.FREE, WorkspaceState.DELETED, created_at=CREATED, deleted_at=None)

    assert removal_due_at(workspace, grace=GRACE) is None


def test_given_a_deletion_when_deleting_again_then_the_first_time_and_its_grace_stand() -> None:
    workspace = Workspace(new_id(), Plan.FREE, WorkspaceState.ACTIVE, created_at=CREATED)
    deleted = mark_deleted(workspace, now=NOW)

    assert mark_deleted(deleted, now=NOW + timedelta(days=10)) == deleted
    assert removal_due_at(deleted, grace=GRACE) == NOW + GRACE


def test_given_a_deleted_workspace_when_restoring_within_grace_then_active_and_after_it_refused() -> None:
    deleted = mark_deleted(Workspace(new_id(), Plan.FREE, WorkspaceState.ACTIVE, created_at=CREATED), now=NOW)

    restored = restore_deleted(deleted, now=NOW + GRACE - timedelta(seconds=1), grace=GRACE)

    assert (restored.state, restored.deleted_at) == (WorkspaceState.ACTIVE, None)
    with pytest.raises(ValueError, match="grace period ended"):
        restore_deleted(deleted, now=NOW + GRACE, grace=GRACE)
    with pytest.raises(ValueError, match="is not deleted"):
        restore_deleted(restored, now=NOW, grace=GRACE)


# -- verify ------------------------------------------------------------------------------------------


def test_given_a_clean_run_when_verifying_then_no_violation() -> None:
    world = World()
    workspace_id = world.add_workspace(Plan.FREE)
    for days in (0, 3, 6, 7, 8, 30):
        world.add_blob(workspace_id, NOW - timedelta(days=days))
    world.add_rows(workspace_id, NOW - timedelta(days=391))
    retention = world.retention()
    retention.run(now=NOW)

    assert retention.verify(world.registry.get_workspace(workspace_id), now=NOW) == []


def test_given_seeded_violations_when_verifying_then_each_is_listed() -> None:
    world = World()
    workspace_id = world.add_workspace(Plan.FREE)
    world.add_blob(workspace_id, NOW - timedelta(days=30))  # raw day and its ledger row outside
    world.add_rows(workspace_id, NOW - timedelta(days=400))  # aggregate rows outside
    inside = world.add_blob(workspace_id, NOW - timedelta(days=2))
    world.store.blobs.pop((workspace_id, inside))  # processed, inside the window, and gone
    world.counters.days[workspace_id] = {NOW.date(), (NOW - timedelta(days=40)).date()}  # one too old
    world.assertion_ids.seen[(workspace_id, "old")] = NOW - timedelta(days=2)  # expired two runs ago
    world.assertion_ids.seen[(workspace_id, "recent")] = NOW - timedelta(hours=1)  # this run's to purge

    violations = world.retention().verify(world.registry.get_workspace(workspace_id), now=NOW)

    day = (NOW - timedelta(days=30)).date()
    assert violations[0] == f"raw day {day} is outside the 7-day window"
    assert violations[1:5] == [f"1 {table} rows are older than 390 days" for table in AGGREGATE_TABLES]
    assert violations[5] == "1 processed_blobs rows are of blobs outside the 7-day window"
    assert violations[6:8] == [
        "1 daily counters are older than 35 days",
        "1 client assertion ids expired more than a run ago",
    ]
    assert violations[8].startswith(f"{(NOW - timedelta(days=2)).date()}: 1 processed blobs are in neither")
    assert inside in violations[8]
    assert len(violations) == 9


def test_given_something_outside_for_less_than_a_timer_period_when_verifying_then_not_yet_a_violation() -> (
    None
):
    world = World()
    workspace_id = world.add_workspace(Plan.FREE)
    world.add_blob(workspace_id, NOW - timedelta(days=8))  # outside since 00:00 today; the 02:00 run is due

    assert (
        world.retention().verify(world.registry.get_workspace(workspace_id), now=NOW - timedelta(hours=1))
        == []
    )
    assert (
        world.retention().verify(world.registry.get_workspace(workspace_id), now=NOW + timedelta(days=1))
        != []
    )


def test_given_a_quarantined_blob_inside_the_window_when_verifying_then_its_ledger_row_is_satisfied() -> None:
    world = World()
    workspace_id = world.add_workspace(Plan.FREE)
    name = world.add_blob(workspace_id, NOW - timedelta(days=1))
    world.store.quarantine_raw(workspace_id, name, reason="InvalidDataFormat", detail="corrupt")

    assert world.retention().verify(world.registry.get_workspace(workspace_id), now=NOW) == []


def test_given_a_workspace_past_grace_and_not_removed_when_verifying_then_it_is_a_violation() -> None:
    world = World()
    workspace_id = world.add_workspace(Plan.FREE, deleted_at=NOW - GRACE - timedelta(days=2))

    violations = world.retention().verify(world.registry.get_workspace(workspace_id), now=NOW)

    assert violations == [f"deleted at {NOW - GRACE - timedelta(days=2)} and still not removed"]
