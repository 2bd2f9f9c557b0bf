"""The agent end to end: `sluice agent ...` in subprocesses against the local host (one per module, on
one endpoint that a test may take down and bring back). What arrived is read independently: the raw
blobs from Azurite (every record carries a sequence number, `Seq`) and the aggregates (`sluice usage`).
Every test uses a workspace of its own, so aggregates are the test's alone."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import free_port
from shared.agentclient.agent import Agent as LocalAgent
from shared.agentclient.config import AgentConfig, DeliveryOptions, StateDir
from tests.e2e.support import eventually
from tests.support.agent_client import (
    AgentCli,
    RawBatch,
    RestartableHost,
    StartedAgent,
    Workspace,
    json_lines,
)

pytestmark = pytest.mark.e2e

PROCESSED_TIMEOUT_SECONDS = 20.0
KILLS = 4
BATCH_MAX_BYTES = "2k"  # small batches: many of them, for the kills and the cap to land between


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableHost]:
    host = RestartableHost(tmp_path_factory.mktemp("agent-client"))
    try:
        host.start()
        yield host
    finally:
        host.kill()


@pytest.fixture
def running(service: RestartableHost) -> RestartableHost:
    service.start()  # a test that failed while the service was down does not take the next one with it
    return service


@pytest.fixture
def workspace(running: RestartableHost) -> Workspace:
    created = running.sluice("workspace", "create")
    return Workspace(created["workspace_id"], created["enrollment_key"], created["primary_key"])


@pytest.fixture
def unenrolled_agent(tmp_path: Path) -> Iterator[AgentCli]:
    cli = AgentCli(tmp_path / "agent", tmp_path / "agent-logs")
    try:
        yield cli
    finally:
        cli.kill_all()


@pytest.fixture
def agent(running: RestartableHost, workspace: Workspace, unenrolled_agent: AgentCli) -> AgentCli:
    unenrolled_agent.enroll(
        running.endpoint,
        running.ca_file,
        workspace.workspace_id,
        "--enrollment-key",
        workspace.enrollment_key,
    )
    return unenrolled_agent


def numbered(count: int) -> list[dict[str, Any]]:
    return [
        {"Seq": seq, "Computer": "agent-e2e", "Message": f"record {seq:05d} " + "x" * 40}
        for seq in range(count)
    ]


def sequence_counts(batches: list[RawBatch]) -> Counter[int]:
    return Counter(int(record["Seq"]) for batch in batches for record in batch.records)


def new_log_type() -> str:
    return f"AgentE2E_{uuid.uuid4().hex[:10]}"


def shared_key_auth(key_file: Path, key: str) -> tuple[str, ...]:
    """The enroll flags of shared-key mode, `key` written to `key_file` for them."""
    key_file.write_text(key, encoding="ascii")
    return ("--auth", "shared-key", "--shared-key-file", str(key_file))


def aggregated(service: RestartableHost, workspace: Workspace, log_type: str, expected: int) -> int:
    """The records the aggregates count, once they count `expected` (or the timeout says what they do)."""
    eventually(
        lambda: service.usage_records(workspace.workspace_id, log_type) == expected or None,
        timeout=PROCESSED_TIMEOUT_SECONDS,
        what=f"{expected} records of {log_type} in the aggregates",
    )
    return service.usage_records(workspace.workspace_id, log_type)


def test_given_the_service_down_for_a_while_when_it_comes_back_then_every_record_arrives_exactly_once(
    running: RestartableHost, workspace: Workspace, agent: AgentCli, tmp_path: Path
) -> None:
    log_type = new_log_type()
    records = numbered(300)
    input_file = tmp_path / "records.jsonl"
    input_file.write_bytes(json_lines(records))
    running.stop()

    sending = agent.start(
        "send",
        str(input_file),
        "--log-type",
        log_type,
        "--retry-interval",
        "1s",
        "--batch-max-bytes",
        BATCH_MAX_BYTES,
    )
    eventually(
        lambda: sum("could not deliver" in m for m in sending.log_messages()) >= 3 or None,
        timeout=30,
        what="three failed attempts while the service is down",
    )
    running.start()

    assert sending.wait() == 0, sending.stderr_file.read_text()
    batches = running.raw_batches(workspace.workspace_id, log_type)
    assert sequence_counts(batches) == Counter(range(300))
    assert aggregated(running, workspace, log_type, 300) == 300
    assert agent.spooled_batches() == 0


def test_given_kill_9_at_random_points_of_a_delivery_then_after_restarts_nothing_is_lost(
    running: RestartableHost, workspace: Workspace, agent: AgentCli
) -> None:
    """Duplicates can only come from a batch whose 2xx the killed process did not get to act on (the
    service stored it, the spool still had it): it is sent again whole, byte for byte the same. So
    counted once per distinct batch every record arrives exactly once, and each kill adds at most one
    batch stored twice. This agent authenticates with its TLS client certificate."""
    seed = int(os.environ.get("SLUICE_AGENT_KILL_SEED", time.time_ns()))
    rng = random.Random(seed)
    log_type = new_log_type()
    count = 1000
    agent.enroll(
        running.endpoint,
        running.ca_file,
        workspace.workspace_id,
        "--enrollment-key",
        workspace.enrollment_key,
        "--auth",
        "client-certificate",
    )
    config = AgentConfig.load(StateDir(agent.state_dir), DeliveryOptions(batch_max_bytes=2048))
    LocalAgent(config).take(numbered(count), log_type=log_type)  # spooled; no process sends yet
    kills = 0

    for _ in range(KILLS):
        flushing = agent.start("flush")
        first_delivery(agent, flushing)
        if flushing.process.poll() is not None:
            break  # everything was delivered before this kill
        time.sleep(rng.uniform(0, 0.08))
        flushing.process.send_signal(signal.SIGKILL)
        flushing.wait()
        kills += 1
    final = agent.run("flush")

    assert final.returncode == 0, final.stderr
    batches = running.raw_batches(workspace.workspace_id, log_type)
    distinct = {batch.sha256: batch for batch in batches}
    assert sequence_counts(list(distinct.values())) == Counter(range(count)), f"seed {seed}"
    assert len(batches) - len(distinct) <= kills, f"seed {seed}"
    stored = sum(len(batch.records) for batch in batches)
    assert aggregated(running, workspace, log_type, stored) == stored >= count
    print(f"seed {seed}: {kills} kills, {len(batches) - len(distinct)} batches stored twice")


def first_delivery(agent: AgentCli, flushing: StartedAgent) -> None:
    """Waits until the run has delivered its first batch, or ended."""
    before = agent.spooled_batches()
    eventually(
        lambda: agent.spooled_batches() < before or flushing.process.poll() is not None or None,
        timeout=30,
        what="the first delivery of this run",
    )


def test_given_the_service_unreachable_and_over_the_spool_cap_then_the_oldest_go_counted_the_rest_arrive(
    running: RestartableHost, workspace: Workspace, unenrolled_agent: AgentCli, tmp_path: Path
) -> None:
    """Shared-key mode, which needs no enrollment: first pointed at a port nobody listens on."""
    log_type = new_log_type()
    count = 400
    agent = unenrolled_agent
    shared_key = shared_key_auth(tmp_path / "workspace-key", workspace.primary_key)
    agent.enroll(f"https://127.0.0.1:{free_port()}", running.ca_file, workspace.workspace_id, *shared_key)

    sent = agent.run(
        "send",
        "--log-type",
        log_type,
        "--no-wait",
        "--batch-max-bytes",
        BATCH_MAX_BYTES,
        "--spool-max-bytes",
        "3k",
        stdin=json_lines(numbered(count)),
    )
    status = json.loads(agent.run("status", "--json").stdout)
    agent.enroll(running.endpoint, running.ca_file, workspace.workspace_id, *shared_key)
    flushed = agent.run("flush")

    assert sent.returncode == 75, sent.stderr  # batches wait for a later attempt
    drops = [m for m in sent.log_messages() if m.startswith("spool cap of 3072 bytes: dropped the")]
    dropped = sum(int(m.split("(")[1].split()[0]) for m in drops)
    assert drops and 0 < dropped < count
    assert 0 < status["spool_bytes"] <= 3072
    assert status["spool_records"] == count - dropped
    assert flushed.returncode == 0, flushed.stderr
    counts = sequence_counts(running.raw_batches(workspace.workspace_id, log_type))
    assert sorted(counts) == list(range(dropped, count))  # the newest are kept, each once
    assert set(counts.values()) == {1}
    assert aggregated(running, workspace, log_type, count - dropped) == count - dropped


def test_given_a_shared_key_the_service_no_longer_takes_then_the_batches_wait_until_the_agent_has_the_new_one(
    running: RestartableHost, workspace: Workspace, unenrolled_agent: AgentCli, tmp_path: Path
) -> None:
    """As after the workspace key was rotated: every post is 403, which the agent cannot fix alone
    but its operator can, so nothing may be refused for good meanwhile."""
    log_type = new_log_type()
    count = 100
    agent = unenrolled_agent
    key_file = tmp_path / "workspace-key"
    stale_key = base64.b64encode(os.urandom(64)).decode("ascii")
    agent.enroll(
        running.endpoint, running.ca_file, workspace.workspace_id, *shared_key_auth(key_file, stale_key)
    )

    sent = agent.run(
        "send",
        "--log-type",
        log_type,
        "--no-wait",
        "--batch-max-bytes",
        BATCH_MAX_BYTES,
        stdin=json_lines(numbered(count)),
    )
    status = json.loads(agent.run("status", "--json").stdout)
    new_key = shared_key_auth(key_file, workspace.primary_key)
    agent.enroll(running.endpoint, running.ca_file, workspace.workspace_id, *new_key)
    flushed = agent.run("flush")

    assert sent.returncode == 75, sent.stderr  # batches wait for a later attempt
    assert any("403" in m and "shared key was rotated" in m for m in sent.log_messages()), sent.stderr
    assert (status["spool_records"], status["rejected_batches"]) == (count, 0)
    assert flushed.returncode == 0, flushed.stderr
    assert sequence_counts(running.raw_batches(workspace.workspace_id, log_type)) == Counter(range(count))
    assert aggregated(running, workspace, log_type, count) == count


def test_given_a_tailed_file_rotated_both_ways_and_the_agent_restarted_then_every_line_arrives_once(
    running: RestartableHost, workspace: Workspace, agent: AgentCli, tmp_path: Path
) -> None:
    log_type = new_log_type()
    path = tmp_path / "app.log"
    path.write_text("", encoding="utf-8")
    written = 0

    def write(lines: int) -> None:
        nonlocal written
        with path.open("a", encoding="utf-8") as handle:
            for _ in range(lines):
                handle.write(f"line {written:04d}\n")
                written += 1

    def delivered() -> int:
        return sum(len(b.records) for b in running.raw_batches(workspace.workspace_id, log_type))

    def wait_delivered() -> None:
        eventually(lambda: delivered() == written or None, timeout=20, what=f"{written} lines delivered")

    def tail() -> StartedAgent:
        return agent.start("tail", str(path), "--log-type", log_type, "--poll-interval", "100ms")

    following = tail()
    eventually(
        lambda: any((agent.state_dir / "tail").glob("*.json")) or None, timeout=20, what="tail started"
    )
    write(30)
    wait_delivered()
    path.rename(path.with_name("app.log.1"))  # rename and create
    path.write_text("", encoding="utf-8")
    write(30)
    wait_delivered()
    shutil.copyfile(path, path.with_name("app.log.2"))  # copytruncate, after everything was read
    with path.open("r+") as handle:
        handle.truncate(0)
    write(30)
    wait_delivered()
    following.process.send_signal(signal.SIGTERM)
    assert following.wait() == 0
    write(20)  # while the agent is stopped
    path.rename(path.with_name("app.log.3"))
    path.write_text("", encoding="utf-8")
    write(10)
    restarted = tail()
    wait_delivered()
    restarted.process.send_signal(signal.SIGTERM)
    assert restarted.wait() == 0

    lines = [r["Message"] for b in running.raw_batches(workspace.workspace_id, log_type) for r in b.records]
    assert sorted(lines) == [f"line {n:04d}" for n in range(written)]
    assert aggregated(running, workspace, log_type, written) == written
