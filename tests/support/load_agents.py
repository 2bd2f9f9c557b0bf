"""Agents under load: the real agent library (spool, retry schedule, Retry-After) over real TLS, each
request timed and its answer kept by a transport wrapped around the agent's own; every record numbered
(`Agent`, `Seq`) so what arrived can be reconciled record by record against what was acknowledged."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from shared.agentclient.agent import Agent
from shared.agentclient.config import AgentConfig, DeliveryOptions, RetryPolicy, StateDir
from shared.agentclient.transport import HttpAnswer, HttpsTransport, Transport

CUSTOM_LOG_TYPE = "LoadApp"
PERF_LOG_TYPE = "Perf"
LOG_TYPES = (CUSTOM_LOG_TYPE, PERF_LOG_TYPE)
RECORDS_PER_POST = (20, 200)
PERF_EVERY = 4  # every fourth post is a batch of Perf samples
# Without a Retry-After (no answer at all), try again soon: the run is seconds long, not hours.
LOAD_RETRY = RetryPolicy(interval=timedelta(seconds=1), window=timedelta(hours=2))
REQUEST_TIMEOUT_SECONDS = 30.0
LEVELS = ("Information", "Warning", "Error")
COUNTERS = (("Processor", "% Processor Time", "_Total"), ("Memory", "Available MBytes", ""))

RecordId = tuple[int, int]  # (agent, sequence number)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request as the client saw it: the status (None: no answer came) and how long it took."""

    status: int | None
    seconds: float


class TimedTransport:
    """The agent's transport, with every exchange recorded."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        started = time.perf_counter()
        try:
            answer = self._inner.post(url, body, headers)
        except OSError:
            self._keep(Exchange(None, time.perf_counter() - started))
            raise
        self._keep(Exchange(answer.status, time.perf_counter() - started))
        return answer

    def _keep(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)


@dataclass
class AgentOutcome:
    """What the service acknowledged of one agent's records, by record id: each record's JSON bytes
    (what the aggregates count); and the records it refused for good or the agent dropped."""

    workspace_id: str
    acknowledged: dict[RecordId, int] = field(default_factory=dict)
    refused_records: int = 0
    expired_records: int = 0


class LoadAgent:
    """One enrolled agent (its state dir), sending numbered records until a deadline."""

    def __init__(self, number: int, state_dir: Path, *, seed: int) -> None:
        self.number = number
        config = AgentConfig.load(
            StateDir(state_dir),
            DeliveryOptions(retry=LOAD_RETRY, request_timeout_seconds=REQUEST_TIMEOUT_SECONDS),
        )
        self.transport = TimedTransport(
            HttpsTransport(ca_file=config.identity.ca_file, timeout_seconds=REQUEST_TIMEOUT_SECONDS)
        )
        self._agent = Agent(config, transport=self.transport)
        self._rng = random.Random(seed)
        self.outcome = AgentOutcome(workspace_id=config.identity.workspace_id)
        self._sequence = 0

    def run_until(self, deadline: float, give_up_at: float) -> AgentOutcome:
        """Posts a batch at a time, each delivered (through retries) before the next, until `deadline`
        (time.monotonic()); a retry that would wait past `give_up_at` raises TimeoutError."""

        def sleep(seconds: float) -> None:
            if time.monotonic() + seconds > give_up_at:
                raise TimeoutError(f"agent {self.number} would still be retrying after its time limit")
            time.sleep(seconds)

        posts = 0
        while time.monotonic() < deadline:
            log_type = PERF_LOG_TYPE if posts % PERF_EVERY == PERF_EVERY - 1 else CUSTOM_LOG_TYPE
            records = self._records(log_type, self._rng.randint(*RECORDS_PER_POST))
            report = self._agent.send(records, log_type=log_type, wait=True, sleep=sleep)
            assert report is not None, "another process delivers this agent's spool"
            self._count(records, report.delivered.records)
            self.outcome.refused_records += report.refused.records
            self.outcome.expired_records += report.expired.records
            posts += 1
        return self.outcome

    def _count(self, records: list[dict[str, Any]], delivered: int) -> None:
        """All records of a send are acknowledged when all were delivered (one batch per send: a
        refused or expired batch is counted apart and its records are not acknowledged)."""
        if delivered != len(records):
            return
        for record in records:
            self.outcome.acknowledged[(record["Agent"], record["Seq"])] = len(orjson.dumps(record))

    def _records(self, log_type: str, count: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC).isoformat()
        computer = f"load-{self.number:02d}-{self._rng.randrange(4)}"
        records = []
        for _ in range(count):
            self._sequence += 1
            numbered = {
                "Agent": self.number,
                "Seq": self._sequence,
                "Computer": computer,
                "TimeGenerated": now,
            }
            if log_type == PERF_LOG_TYPE:
                object_name, counter_name, instance_name = self._rng.choice(COUNTERS)
                numbered |= {
                    "ObjectName": object_name,
                    "CounterName": counter_name,
                    "InstanceName": instance_name,
                    "CounterValue": round(self._rng.uniform(0, 100), 3),
                }
            else:
                numbered |= {
                    "Level": self._rng.choice(LEVELS),
                    "Message": f"request {self._sequence} served in {self._rng.randrange(1, 900)} ms "
                    + "x" * self._rng.randrange(0, 400),
                }
            records.append(numbered)
        return records


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]
