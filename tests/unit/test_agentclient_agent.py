"""The agent put together (shared.agentclient.agent) with a scripted transport on a real state dir:
send-then-wait by the retry schedule, the spool's single sender, and a tail that delivers its lines
once across a stop and a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from shared.agentclient.agent import Agent
from shared.agentclient.config import AgentConfig, DeliveryOptions, StateDir
from shared.agentclient.enrollment import use_shared_key
from tests.support.agent_fakes import FakeClock, ScriptedTransport

WORKSPACE = "00000000-0000-4000-8000-000000000001"
KEY = "c2VjcmV0IGtleSBvZiB0aGUgd29ya3NwYWNl"
DOWN = ConnectionRefusedError("connection refused")
WAIT_SECONDS = 10.0


@pytest.fixture
def config(tmp_path: Path) -> AgentConfig:
    state = StateDir(tmp_path / "agent")
    use_shared_key(
        state, endpoint="https://sluice.example", workspace_id=WORKSPACE, shared_key=KEY, ca_file=None
    )
    return AgentConfig.load(state, DeliveryOptions(batch_max_bytes=200))


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_given_the_endpoint_down_twice_when_sending_and_waiting_then_it_sleeps_8_minutes_each_time(
    config: AgentConfig,
) -> None:
    clock = FakeClock()
    transport = ScriptedTransport(clock, DOWN, DOWN)
    agent = Agent(config, clock=clock, transport=transport)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    report = agent.send([{"Seq": index} for index in range(30)], log_type="App", wait=True, sleep=sleep)

    assert report is not None and report.retry_at is None
    assert report.delivered.records == 30 and report.delivered.batches > 1
    assert slept == [480.0, 480.0]
    assert [r["Seq"] for a in transport.attempts[2:] for r in a.records()] == list(range(30))
    assert transport.attempts[0].url == "https://sluice.example/api/logs?api-version=2016-04-01"


def test_given_the_service_up_when_sending_more_than_the_spool_cap_then_each_batch_goes_as_it_is_taken(
    tmp_path: Path,
) -> None:
    state = StateDir(tmp_path / "small")
    use_shared_key(
        state, endpoint="https://sluice.example", workspace_id=WORKSPACE, shared_key=KEY, ca_file=None
    )
    clock = FakeClock()
    transport = ScriptedTransport(clock)
    agent = Agent(
        AgentConfig.load(state, DeliveryOptions(batch_max_bytes=200, spool_max_bytes=1_000)),
        clock=clock,
        transport=transport,
    )

    report = agent.send([{"Seq": index} for index in range(300)], log_type="App", wait=False)

    assert report is not None and report.delivered.records == 300
    assert [r["Seq"] for a in transport.attempts for r in a.records()] == list(range(300))


def test_given_another_process_delivering_the_spool_then_send_and_deliver_leave_the_batches_to_it(
    config: AgentConfig,
) -> None:
    clock = FakeClock()
    transport = ScriptedTransport(clock)
    agent = Agent(config, clock=clock, transport=transport)
    agent.take([{"Seq": 1}], log_type="App")
    other = agent.spool.sender_lock()  # another process's hold, as flock sees it
    assert other.acquire()

    sent = agent.send([{"Seq": 2}], log_type="App", wait=True)
    delivered = agent.deliver(wait=True)

    other.release()
    assert sent is None and delivered is None
    assert transport.attempts == []
    assert agent.spool.summary().batches == 2


def test_given_a_followed_file_when_the_agent_is_stopped_and_restarted_then_every_line_is_delivered_once(
    config: AgentConfig, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    path.write_text("before\n", encoding="utf-8")
    clock = FakeClock()
    transport = ScriptedTransport(clock)

    def follow_while(action: Callable[[], None], *, expected: int) -> None:
        stop = threading.Event()
        agent = Agent(config, clock=clock, transport=transport)
        thread = threading.Thread(
            target=agent.follow,
            kwargs={
                "path": path,
                "log_type": "App",
                "stop": stop,
                "poll_seconds": 0.02,
                "flush_seconds": 0.05,
            },
        )
        thread.start()
        try:
            action()
            eventually(lambda: delivered() == expected, f"{expected} lines delivered")
        finally:
            stop.set()
            thread.join(WAIT_SECONDS)

    def delivered() -> int:
        return sum(len(a.records()) for a in transport.attempts)

    def write(first: int, count: int) -> Callable[[], None]:
        def action() -> None:
            # Following has begun (at the end of the file) once its first position is saved.
            eventually(lambda: any(config.state.checkpoint_dir.glob("*.json")), "a checkpoint")
            for index in range(first, first + count):
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(f"line {index}\n")

        return action

    follow_while(write(0, 20), expected=20)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("written while stopped\n")
    follow_while(write(20, 5), expected=26)

    messages = [r["Message"] for a in transport.attempts for r in a.records()]
    assert messages == [f"line {i}" for i in range(20)] + ["written while stopped"] + [
        f"line {i}" for i in range(20, 25)
    ]
    assert Agent(config, clock=clock, transport=transport).spool.summary().batches == 0
