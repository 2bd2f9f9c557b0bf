"""Load: N concurrent agents for T seconds (the scale's knobs) against the local host over real TLS,
on SQLite and on PostgreSQL, then a full reconciliation per workspace once processing has drained.

Agents are the real agent library (spool, retries, Retry-After), half authenticated by a client
assertion after enrollment, half by the workspace's SharedKey (signed Data Collector posts), spread
over several workspaces; they post custom logs and Perf samples, every record numbered. Under load
the service may answer 429 or 503 with Retry-After: the agent waits and sends again, and the records
must still arrive. The test fails if an acknowledged record is in no blob (lost), if the aggregates
count other than what the blobs hold, or if any 5xx other than 503 is answered."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.agentclient.config import AuthMode
from tests.e2e.support import eventually
from tests.reliability.conftest import Figures, Scale
from tests.support.agent_client import AgentCli, RestartableHost, Workspace
from tests.support.load_agents import LOG_TYPES, AgentOutcome, LoadAgent, percentile
from tests.support.load_reconciliation import Reconciliation, reconcile
from tests.support.runtime import SqlTarget

pytestmark = pytest.mark.e2e

WORKSPACES = 3
AUTH_KINDS = (AuthMode.ASSERTION, AuthMode.SHARED_KEY)
# An agent still retrying when its time is up finishes its post; past this it gives up (and fails).
FINISH_SECONDS = 60.0
DRAIN_SECONDS = 120.0
THROTTLED = (429, 503)


@pytest.fixture
def service(tmp_path: Path, sql_target: SqlTarget) -> Iterator[RestartableHost]:
    host = RestartableHost(tmp_path)
    # The host and `sluice` read the same environment: point both at the parametrized database.
    host.env |= {
        "SLUICE_SQL_DIALECT": sql_target.dialect.value,
        "SLUICE_SQL_CONNECTION": sql_target.connection,
    }
    try:
        host.start()
        yield host
    finally:
        host.kill()


def enrolled_agent(service: RestartableHost, workspace: Workspace, number: int, tmp_path: Path) -> LoadAgent:
    """Agent `number`, enrolled with `sluice agent enroll` in the auth kind its number picks."""
    cli = AgentCli(tmp_path / f"agent-{number:02d}", tmp_path / "agent-logs")
    if AUTH_KINDS[number % len(AUTH_KINDS)] is AuthMode.SHARED_KEY:
        key_file = tmp_path / f"shared-key-{number:02d}"
        key_file.write_text(workspace.primary_key, encoding="ascii")
        auth: tuple[str, ...] = ("--auth", "shared-key", "--shared-key-file", str(key_file))
    else:
        auth = ("--enrollment-key", workspace.enrollment_key)
    cli.enroll(service.endpoint, service.ca_file, workspace.workspace_id, *auth)
    return LoadAgent(number, cli.state_dir, seed=number)


@dataclass(frozen=True)
class Aggregated:
    """A workspace's hourly usage summed over its rows."""

    records: int
    bytes: int
    records_by_log_type: dict[str, int]


def aggregated(service: RestartableHost, workspace_id: str) -> Aggregated:
    """What `sluice usage` counts for the workspace."""
    rows = service.sluice("usage", "--workspace", workspace_id)
    by_log_type: Counter[str] = Counter()
    for row in rows:
        by_log_type[row["log_type"]] += int(row["records"])
    return Aggregated(by_log_type.total(), sum(int(row["bytes"]) for row in rows), dict(by_log_type))


def created_workspace(service: RestartableHost) -> Workspace:
    created = service.sluice("workspace", "create")
    return Workspace(created["workspace_id"], created["enrollment_key"], created["primary_key"])


def test_given_concurrent_agents_when_the_load_has_drained_then_every_acknowledged_record_is_counted_once(
    service: RestartableHost, sql_target: SqlTarget, scale: Scale, figures: Figures, tmp_path: Path
) -> None:
    # given: workspaces, and agents of both auth kinds spread over them
    with ThreadPoolExecutor(max_workers=scale.concurrent_agents) as pool:
        workspaces = list(pool.map(lambda _: created_workspace(service), range(WORKSPACES)))
        agents = list(
            pool.map(
                lambda n: enrolled_agent(service, workspaces[n % WORKSPACES], n, tmp_path),
                range(scale.concurrent_agents),
            )
        )

        # when: every agent sends for the scale's seconds
        started = time.monotonic()
        deadline = started + scale.load_seconds
        running = [pool.submit(agent.run_until, deadline, deadline + FINISH_SECONDS) for agent in agents]
        outcomes: list[AgentOutcome] = [run.result() for run in running]
    load_seconds = time.monotonic() - started

    # then: nothing refused for good, no 5xx but 503
    exchanges = [exchange for agent in agents for exchange in agent.transport.exchanges]
    statuses = [exchange.status for exchange in exchanges]
    server_errors = sorted({s for s in statuses if s is not None and s >= 500 and s != 503})
    assert not server_errors, f"5xx other than 503 under load: {server_errors}"
    assert sum(outcome.refused_records + outcome.expired_records for outcome in outcomes) == 0, sorted(
        {s for s in statuses if s is not None and 400 <= s < 500 and s not in THROTTLED}
    )

    # and: every acknowledged record is in a blob, and the aggregates count exactly what the blobs hold
    reconciliations = [
        reconcile(
            workspace.workspace_id,
            outcomes,
            {log_type: service.raw_batches(workspace.workspace_id, log_type) for log_type in LOG_TYPES},
        )
        for workspace in workspaces
    ]

    def drained() -> dict[str, Aggregated] | None:
        current = {r.workspace_id: aggregated(service, r.workspace_id) for r in reconciliations}
        return (
            current
            if all(current[r.workspace_id].records >= r.stored_records for r in reconciliations)
            else None
        )

    drain_started = time.monotonic()
    aggregates = eventually(
        drained,
        timeout=DRAIN_SECONDS,
        what="processing has drained: the aggregates count every stored record",
        interval=1.0,
    )
    drain_seconds = time.monotonic() - drain_started
    in_aggregates = sum(counted.records for counted in aggregates.values())
    record_figures(
        figures, sql_target, scale, agents, reconciliations, in_aggregates, load_seconds, drain_seconds
    )
    for reconciliation in reconciliations:
        assert reconciliation.lost == 0, reconciliation
        assert reconciliation.unacknowledged_stored == 0, reconciliation
        assert aggregates[reconciliation.workspace_id] == Aggregated(
            reconciliation.stored_records, reconciliation.stored_bytes, reconciliation.stored_by_log_type
        ), reconciliation
        assert reconciliation.acknowledged_records > 0, "a workspace received nothing: the load is too short"


def record_figures(
    figures: Figures,
    sql_target: SqlTarget,
    scale: Scale,
    agents: list[LoadAgent],
    reconciliations: list[Reconciliation],
    in_aggregates: int,
    load_seconds: float,
    drain_seconds: float,
) -> None:
    section = f"load ({sql_target.dialect.value})"
    exchanges = [exchange for agent in agents for exchange in agent.transport.exchanges]
    answered_ms = [exchange.seconds * 1000 for exchange in exchanges if exchange.status is not None]
    acknowledged = sum(r.acknowledged_records for r in reconciliations)
    figures.record(section, "agents", scale.concurrent_agents)
    figures.record(section, "auth kinds", ", ".join(kind.value for kind in AUTH_KINDS))
    figures.record(section, "workspaces", WORKSPACES)
    figures.record(section, "seconds", round(load_seconds, 1))
    figures.record(section, "requests sent", len(exchanges))
    figures.record(section, "accepted (2xx)", sum(1 for e in exchanges if e.status and 200 <= e.status < 300))
    figures.record(section, "refused (429/503, retried)", sum(1 for e in exchanges if e.status in THROTTLED))
    figures.record(section, "no answer (retried)", sum(1 for e in exchanges if e.status is None))
    figures.record(section, "records sent (acknowledged)", acknowledged)
    figures.record(section, "bytes sent (acknowledged)", sum(r.acknowledged_bytes for r in reconciliations))
    figures.record(section, "records in aggregates", in_aggregates)
    figures.record(section, "lost", sum(r.lost for r in reconciliations))
    figures.record(section, "duplicate blobs", sum(r.duplicate_blobs for r in reconciliations))
    figures.record(section, "ingest latency p50 ms", round(percentile(answered_ms, 0.50), 1))
    figures.record(section, "ingest latency p95 ms", round(percentile(answered_ms, 0.95), 1))
    figures.record(section, "ingest latency p99 ms", round(percentile(answered_ms, 0.99), 1))
    figures.record(section, "throughput records/s", round(acknowledged / load_seconds))
    figures.record(section, "processing drained after load, s", round(drain_seconds, 1))
