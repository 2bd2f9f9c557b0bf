"""Faults on the local stack: storage stopped during ingest and during processing, PostgreSQL sessions
killed mid-transaction, the host killed with SIGKILL under an agent's stream, a retention run killed
half way. Each test injects its fault from outside the code under test (stopping Azurite, terminating a
backend, killing a process), asserts the guarantee so that it fails if the guarantee breaks, and
records faults injected, requests sent, lost and duplicates in the `figures`.

Storage faults run the function folders in process on an Azurite of the test's own (so stopping it
touches no other test) and a PostgreSQL database; the kill test runs the local host as a subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ingest_http
import process_blob
from devhost.azurite import REPO_ROOT, Azurite
from shared import azure_storage
from shared.plans import AGGREGATE_RETENTION_DAYS, Plan
from shared.runtime import reset_services
from shared.settings import SqlDialect
from tests.e2e.support import SLUICE_COMMAND, eventually
from tests.reliability.conftest import Figures, Scale
from tests.support.agent_client import AgentCli, json_lines
from tests.support.datacollector import blob_created_event, signed_request
from tests.support.fault_host import KillableHost
from tests.support.fault_postgres import (
    HeldTableLock,
    backends_waiting_on_a_lock,
    committed_value,
    terminate_backend,
)
from tests.support.fault_storage import (
    storage_down,
    stored_blobs,
)
from tests.support.postgres import PostgresCluster, PostgresDatabase
from tests.support.retention_scenarios import NOW, Seeded, expected_after_one_run, observed, state_of
from tests.support.runtime import Runtime, SqlTarget, configure_runtime
from tests.support.storage import start_azurite

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SEED = int(os.environ.get("SLUICE_FAULT_SEED", time.time_ns()))
RECORDS_PER_POST = 3
WAIT_SECONDS = 30.0
POST_INTERVAL_SECONDS = 0.01


@pytest.fixture
def rng() -> random.Random:
    print(f"SLUICE_FAULT_SEED={SEED}")
    return random.Random(SEED)


@dataclass(frozen=True)
class FaultStack:
    """The runtime on an Azurite and a PostgreSQL database the test may take away."""

    azurite: Azurite
    runtime: Runtime
    cluster: PostgresCluster
    database: PostgresDatabase

    @property
    def workspace_id(self) -> str:
        return self.runtime.workspace_id

    def usage_records(self) -> int:
        return sum(row.records for row in self.runtime.services.database.list_usage(self.workspace_id))

    def committed(self) -> tuple[int, int]:
        """Ledger rows and usage records committed for the workspace, read in sessions of their own
        (the runtime's Database is busy while one of its transactions waits)."""
        where = f"WHERE workspace_id = '{self.workspace_id}'"
        return (
            committed_value(
                self.cluster, self.database.name, f"SELECT count(*) FROM processed_blobs {where}"
            ),
            committed_value(
                self.cluster,
                self.database.name,
                f"SELECT coalesce(sum(records), 0) FROM usage_hourly {where}",
            ),
        )


@pytest.fixture
def stack(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_cluster: PostgresCluster,
    pg_database: PostgresDatabase,
) -> Iterator[FaultStack]:
    azurite = start_azurite(tmp_path / "azurite")
    # Production's clients and retry counts, without the waits between attempts: the outage tests want
    # the answers (tests/integration/test_storage_retries.py checks the production backoff's attempts).
    monkeypatch.setattr(azure_storage, "BLOB_RETRY_BACKOFF_SECONDS", 0)
    monkeypatch.setattr(azure_storage, "TABLE_RETRY_BACKOFF_FACTOR", 0)
    try:
        runtime = configure_runtime(
            monkeypatch,
            storage_connection_string=azurite.ports.connection_string,
            sql=SqlTarget(SqlDialect.POSTGRESQL, pg_database.connection_string),
            secrets_dir=tmp_path / "secrets",
        )
        yield FaultStack(azurite, runtime, postgres_cluster, pg_database)
    finally:
        reset_services()
        azurite.stop()


def post(runtime: Runtime, post_number: int, log_type: str) -> tuple[int, str | None]:
    """A signed Data Collector post of RECORDS_PER_POST records tagged with its number; the answer's
    status and Retry-After."""
    records = [{"Computer": "fault-host", "Post": post_number, "Seq": i} for i in range(RECORDS_PER_POST)]
    response = ingest_http.main(
        signed_request(
            workspace_id=runtime.workspace_id,
            key_b64=runtime.workspace.primary_key,
            body=json.dumps(records).encode("utf-8"),
            log_type=log_type,
        )
    )
    return response.status_code, response.headers.get("Retry-After")


def post_acknowledged(stack: FaultStack, count: int, log_type: str) -> list[str]:
    """`count` posts while everything is up, each answered 200; the names of their blobs."""
    for number in range(count):
        assert post(stack.runtime, number, log_type)[0] == 200
    return [blob.name for blob in stored_blobs(stack.runtime.blob_service, stack.workspace_id)]


@dataclass
class EventGrid:
    """At-least-once delivery, as Event Grid does it: an invocation that raised is delivered again later,
    one that returned is acknowledged and never delivered again (unless duplicated on purpose)."""

    workspace_id: str
    deliveries: int = 0
    failures: int = 0

    def deliver(self, names: list[str]) -> list[str]:
        """Each event once; the names whose invocation raised, which Event Grid redelivers."""
        failed = []
        for name in names:
            self.deliveries += 1
            try:
                process_blob.main(blob_created_event(f"ws-{self.workspace_id}", name))
            except Exception:
                self.failures += 1
                failed.append(name)
        return failed


# -- 1. storage stopped during ingest ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    post: int
    status: int
    retry_after: str | None
    sent_at: float
    answered_at: float


@dataclass
class PostStream:
    """Posts one after another on a thread of its own, POST_INTERVAL_SECONDS apart, until stopped; at
    most `max_posts`."""

    runtime: Runtime
    log_type: str
    max_posts: int
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for number in range(self.max_posts):
            if self._stop.is_set():
                return
            sent_at = time.monotonic()
            status, retry_after = post(self.runtime, number, self.log_type)
            self.answers.append(Answer(number, status, retry_after, sent_at, time.monotonic()))
            self._stop.wait(POST_INTERVAL_SECONDS)

    def stop(self) -> None:
        self._stop.set()

    def wait_for_more(self, status: int, more: int) -> None:
        before = self.count(status)
        eventually(
            lambda: self.count(status) >= before + more or None,
            timeout=WAIT_SECONDS,
            what=f"{more} more posts answered {status}",
            interval=0.02,
        )

    def count(self, status: int) -> int:
        return sum(answer.status == status for answer in list(self.answers))


def test_given_storage_stopped_during_a_stream_of_posts_then_no_200_for_unstored_data_and_every_200_counts(
    stack: FaultStack, scale: Scale, figures: Figures
) -> None:
    """Injected: Azurite stopped (SIGTERM) while posts stream in, `fault_rounds` times, and started again.
    Guaranteed: a post while storage is down is answered 503 with Retry-After, never 200; every post
    answered 200 is stored exactly once and, once its event is delivered, counted in the aggregates.
    A post answered 503 may still have been stored (its blob committed, the answer lost): the client's
    retry then stores it twice; that count is recorded, not hidden."""
    section = "faults: storage stopped during ingest"
    stream = PostStream(stack.runtime, "FaultIngest_CL", max_posts=2000 * scale.fault_rounds)
    outages: list[tuple[float, float]] = []
    poster = threading.Thread(target=stream.run, name="fault-poster")
    poster.start()
    try:
        for _ in range(scale.fault_rounds):
            stream.wait_for_more(200, 3)
            with storage_down(stack.azurite):
                down_since = time.monotonic()
                stream.wait_for_more(503, 5)
                outages.append((down_since, time.monotonic()))
        stream.wait_for_more(200, 3)
    finally:
        stream.stop()
        poster.join(timeout=WAIT_SECONDS)

    answers = stream.answers
    assert {answer.status for answer in answers} <= {200, 503}, Counter(a.status for a in answers)
    refused = [answer for answer in answers if answer.status == 503]
    assert all(answer.retry_after and int(answer.retry_after) > 0 for answer in refused)
    during_outage = [
        answer
        for answer in answers
        if any(start <= answer.sent_at and answer.answered_at <= end for start, end in outages)
    ]
    answered_200_while_down = [answer for answer in during_outage if answer.status == 200]
    assert during_outage and not answered_200_while_down, (
        f"200 while storage was down: {answered_200_while_down}"
    )
    acknowledged = {answer.post for answer in answers if answer.status == 200}
    blobs = stored_blobs(stack.runtime.blob_service, stack.workspace_id)
    posts_stored = Counter(blob.records[0]["Post"] for blob in blobs)
    lost = acknowledged - set(posts_stored)
    assert not lost, f"answered 200 but not stored: {sorted(lost)}"
    assert set(posts_stored.values()) == {1}
    events = EventGrid(stack.workspace_id)
    assert events.deliver([blob.name for blob in blobs]) == []
    stored_records = sum(len(blob.records) for blob in blobs)
    assert stack.usage_records() == stored_records >= len(acknowledged) * RECORDS_PER_POST

    figures.add(section, "outages injected", len(outages))
    figures.add(section, "requests sent", len(answers))
    figures.add(section, "answered 200", len(acknowledged))
    figures.add(section, "answered 503 with Retry-After", len(refused))
    figures.add(section, "answered 200 while storage was down", len(answered_200_while_down))
    figures.add(section, "acknowledged and lost", len(lost))
    figures.add(section, "answered 503 yet stored", len(set(posts_stored) - acknowledged))
    figures.add(section, "records counted", stack.usage_records())


# -- 2. storage stopped during processing ------------------------------------------------------------


def test_given_storage_stopped_while_events_are_processed_then_they_fail_are_redelivered_and_count_once(
    stack: FaultStack, scale: Scale, figures: Figures, rng: random.Random
) -> None:
    """Injected: Azurite stopped part way through a round of BlobCreated deliveries, `fault_rounds`
    times. Guaranteed: an invocation that cannot read its blob raises (so Event Grid redelivers it)
    and commits nothing; after storage is back, the redeliveries, and a duplicate delivery of every
    event on top, leave the aggregates equal to what was acknowledged, each blob in the ledger once."""
    section = "faults: storage stopped during processing"
    posts_per_round = 8
    names = post_acknowledged(stack, posts_per_round * scale.fault_rounds, "FaultProcess_CL")
    events = EventGrid(stack.workspace_id)
    outage_deliveries = 0

    for round_start in range(0, len(names), posts_per_round):
        batch = names[round_start : round_start + posts_per_round]
        stop_at = rng.randrange(1, posts_per_round)
        assert events.deliver(batch[:stop_at]) == []
        with storage_down(stack.azurite):
            redeliver = events.deliver(batch[stop_at:])
            outage_deliveries += len(batch) - stop_at
            assert redeliver == batch[stop_at:], "an event was acknowledged while its blob was unreadable"
            ledger_during_outage, _ = stack.committed()
        assert ledger_during_outage == round_start + stop_at
        assert events.deliver(redeliver) == []
    assert events.deliver(names) == []  # at least once: every event once more

    assert stack.committed() == (len(names), len(names) * RECORDS_PER_POST)
    figures.add(section, "outages injected", scale.fault_rounds)
    figures.add(section, "deliveries", events.deliveries)
    figures.add(section, "deliveries failed during the outage (redelivered)", outage_deliveries)
    figures.add(section, "acknowledged records", len(names) * RECORDS_PER_POST)
    figures.add(section, "records counted", stack.usage_records())
    figures.add(section, "lost", len(names) * RECORDS_PER_POST - stack.usage_records())


# -- 3. PostgreSQL session killed mid-transaction ----------------------------------------------------


def test_given_the_database_session_killed_mid_transaction_then_nothing_partial_commits_and_a_retry_counts(
    stack: FaultStack, scale: Scale, figures: Figures
) -> None:
    """Injected: while apply_blob's transaction has claimed its ledger row and waits to upsert
    usage_hourly (held by a lock from another session), its backend is ended with
    pg_terminate_backend, `fault_rounds` times. Guaranteed: the ledger row and the aggregates are one
    transaction, so nothing of the killed one is committed (checked while the retry waits); the
    in-process retry (shared.sql.retry.call_with_retries) on a new connection applies the blob once;
    a redelivery afterwards changes nothing."""
    section = "faults: PostgreSQL session killed mid-transaction"
    names = post_acknowledged(stack, scale.fault_rounds, "FaultDatabase_CL")
    events = EventGrid(stack.workspace_id)
    cluster, database = stack.cluster, stack.database.name
    terminated = 0

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fault-process") as processing:
        for applied, name in enumerate(names):
            lock = HeldTableLock(cluster, database, "usage_hourly")
            try:
                delivery = processing.submit(events.deliver, [name])
                [victim] = waiting_backends(cluster, database, other_than=set(), unless=delivery)
                assert terminate_backend(cluster, victim)
                terminated += 1
                # The retry on a new session waits on the lock in turn, or has ended (it found the blob
                # already in the ledger): either way, what is committed now is all the killed one left.
                waiting_backends(cluster, database, other_than={victim}, unless=delivery)
                assert stack.committed() == (applied, applied * RECORDS_PER_POST), (
                    "the killed transaction left part of its work committed"
                )
            finally:
                lock.release()
            assert delivery.result(timeout=WAIT_SECONDS) == []
    assert events.deliver(names) == []

    assert stack.committed() == (len(names), len(names) * RECORDS_PER_POST)
    figures.add(section, "backends terminated mid-transaction", terminated)
    figures.add(section, "deliveries", events.deliveries)
    figures.add(section, "acknowledged records", len(names) * RECORDS_PER_POST)
    figures.add(section, "records counted", stack.usage_records())
    figures.add(section, "partial commits seen", 0)


def waiting_backends(
    cluster: PostgresCluster, database: str, *, other_than: set[int], unless: Future[Any]
) -> list[int]:
    """The app's sessions waiting on a lock, once there is one not in `other_than`; [] if `unless` has
    ended first."""
    return eventually(
        lambda: (
            [pid for pid in backends_waiting_on_a_lock(cluster, database) if pid not in other_than]
            or ([] if unless.done() else None)
        ),
        timeout=WAIT_SECONDS,
        what="a session of the app waiting on the lock",
        interval=0.05,
    )


# -- 4. the host killed between blob write and response ----------------------------------------------


@pytest.fixture
def killable_host(tmp_path: Path) -> Iterator[KillableHost]:
    host = KillableHost(tmp_path / "host")
    try:
        host.start()
        yield host
    finally:
        host.close()


def test_given_the_host_killed_at_random_moments_under_an_agent_then_nothing_acknowledged_is_lost(
    killable_host: KillableHost, scale: Scale, figures: Figures, rng: random.Random, tmp_path: Path
) -> None:
    """Injected: the local host (HTTP, BlobCreated delivery, database) killed with SIGKILL at random
    moments while an agent (`sluice agent send`, 1 s retry interval) delivers small batches, and started
    again on the same endpoint, 2 x `fault_rounds` times.

    How duplicates are handled: a post whose blob was committed but whose answer the kill swallowed is
    sent again by the agent, byte for byte (its spooled batch), and stored as a second blob with the
    same sha256. Each blob is a new event, so the aggregates count such a batch twice; the ledger only
    removes redelivered events of one blob (a delivery the kill interrupted runs again after the
    restart and counts once). Guaranteed and checked: every record is in some stored batch (nothing
    acknowledged or spooled is lost), at most one duplicate batch per kill, and the aggregates equal
    exactly the records of the stored blobs. The duplicates are measured and recorded."""
    section = "faults: host killed between blob write and response"
    host = killable_host
    workspace = host.sluice("workspace", "create")
    log_type = f"FaultKill_{uuid.uuid4().hex[:8]}"
    planned_kills = 2 * scale.fault_rounds
    count = 750 * planned_kills  # enough 2 KB batches to keep the agent sending across the kills
    records = [{"Seq": seq, "Computer": "fault-agent", "Message": "x" * 60} for seq in range(count)]
    agent = AgentCli(tmp_path / "agent", tmp_path / "agent-logs")
    agent.enroll(
        host.endpoint,
        host.ca_file,
        workspace["workspace_id"],
        "--enrollment-key",
        workspace["enrollment_key"],
    )
    input_file = tmp_path / "records.jsonl"
    input_file.write_bytes(json_lines(records))
    kills = 0
    try:
        sending = agent.start(
            "send", str(input_file), "--log-type", log_type, "--retry-interval", "1s",
            "--batch-max-bytes", "2k",
        )  # fmt: skip
        for _ in range(planned_kills):
            eventually(
                lambda: (
                    host.raw_batches(workspace["workspace_id"], log_type)
                    or sending.process.poll() is not None
                    or None
                ),
                timeout=WAIT_SECONDS,
                what="the agent delivering",
            )
            time.sleep(rng.uniform(0.0, 0.6))
            if sending.process.poll() is not None:
                break  # everything was delivered before this kill
            host.kill_hard()
            kills += 1
            host.start()
        assert sending.wait() == 0, sending.stderr_file.read_text()
    finally:
        agent.kill_all()

    batches = host.raw_batches(workspace["workspace_id"], log_type)
    distinct = {batch.sha256: batch for batch in batches}
    seqs = Counter(record["Seq"] for batch in distinct.values() for record in batch.records)
    assert seqs == Counter(range(count)), f"lost or split records, SLUICE_FAULT_SEED={SEED}"
    duplicates = len(batches) - len(distinct)
    assert duplicates <= kills
    stored = sum(len(batch.records) for batch in batches)
    eventually(
        lambda: host.usage_records(workspace["workspace_id"], log_type) == stored or None,
        timeout=WAIT_SECONDS,
        what=f"{stored} records counted (every stored blob once)",
    )
    figures.add(section, "kills (SIGKILL) injected", kills)
    figures.add(section, "records sent", count)
    figures.add(section, "batches stored", len(batches))
    figures.add(section, "lost", count - len(seqs))
    figures.add(section, "duplicate batches (same sha256)", duplicates)
    figures.add(section, "records counted twice", stored - count)


# -- 5. retention run killed half way ----------------------------------------------------------------


def kill_after_first_deletion(
    command: list[str], runtime: Runtime, workspace_id: str, rng: random.Random
) -> bool:
    """Runs `command` and kills it with SIGKILL a random few milliseconds after the workspace lost its
    first blob; False when it had ended by then."""
    before = len(runtime.blobs(workspace_id))
    run = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(
            lambda: len(runtime.blobs(workspace_id)) < before or run.poll() is not None or None,
            timeout=WAIT_SECONDS,
            what="the run's first deletion",
            interval=0.01,
        )
        time.sleep(rng.uniform(0.0, 0.05))
        if run.poll() is not None:
            return False
        run.send_signal(signal.SIGKILL)
        return True
    finally:
        run.wait(timeout=WAIT_SECONDS)


def seed_expired_history(runtime: Runtime, days: int) -> Seeded:
    """A Free workspace with one blob (and its ledger row) a day for `days` days before NOW, and a
    week of hourly aggregates straddling the 390-day edge."""
    seeded = Seeded(runtime.new_workspace(Plan.FREE).workspace.workspace_id)
    for back in range(1, days + 1):
        day = NOW - timedelta(days=back)
        seeded.add_blob(runtime, datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    edge = NOW - timedelta(days=AGGREGATE_RETENTION_DAYS + 3)
    for hours in range(0, 24 * 7, 5):
        seeded.add_rows(runtime, edge + timedelta(hours=hours))
    return seeded


def test_given_retention_runs_killed_half_way_when_run_again_then_the_state_is_one_clean_run_s(
    stack: FaultStack, scale: Scale, figures: Figures, rng: random.Random
) -> None:
    """Injected: `sluice retention run` (a subprocess, as the timer's process) killed with SIGKILL
    just after its first deletions, `fault_rounds` runs in a row. Guaranteed: the next complete run
    leaves exactly the state one clean run leaves (computed from the plan's windows, as in
    tests/integration/test_retention.py): every expired day, aggregate hour and ledger row gone,
    nothing inside a window touched, no ledger row lost for a blob still stored."""
    section = "faults: retention run killed half way"
    seeded = seed_expired_history(stack.runtime, days=40)
    expected = expected_after_one_run(seeded, Plan.FREE, NOW)
    command = [str(SLUICE_COMMAND), "retention", "run", "--now", NOW.isoformat()]
    killed_mid_run = 0

    for _ in range(scale.fault_rounds):
        killed_mid_run += kill_after_first_deletion(command, stack.runtime, seeded.workspace_id, rng)
        now_stored = set(stack.runtime.blobs(seeded.workspace_id))
        assert {n for n in seeded.ledger if n in now_stored} <= set(observed(stack.runtime, seeded).ledger)
    assert killed_mid_run, "no run was still running when it was to be killed"
    assert state_of(observed(stack.runtime, seeded)) != state_of(expected)  # it did stop part way
    final = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, timeout=WAIT_SECONDS * 2)

    assert final.returncode == 0, final.stderr.decode("utf-8", "replace")
    assert state_of(observed(stack.runtime, seeded)) == state_of(expected)
    figures.add(section, "runs killed (SIGKILL) mid-run", killed_mid_run)
    figures.add(section, "expired blobs", expected.blobs_deleted)
    figures.add(section, "expired aggregate rows", expected.aggregate_rows_deleted)
    figures.record(section, "state after the next run equals one clean run", "yes")
