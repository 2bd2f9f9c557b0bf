"""Stand-ins for the agent's two injected edges: a clock the test moves, and a transport that answers
from a script and records every attempt (when, where, what)."""

from __future__ import annotations

import gzip
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.agentclient.transport import HttpAnswer

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
OK = HttpAnswer(200)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass(frozen=True)
class Attempt:
    at: datetime
    url: str
    headers: dict[str, str]
    body: bytes

    def records(self) -> list[dict[str, Any]]:
        """The posted records (the body is gzip JSON)."""
        records: list[dict[str, Any]] = json.loads(gzip.decompress(self.body))
        return records


class ScriptedTransport:
    """Answers with the scripted answers (or raises the scripted OSErrors) in order, then with
    `otherwise` for every later attempt."""

    def __init__(
        self, clock: FakeClock, *script: HttpAnswer | OSError, otherwise: HttpAnswer | OSError = OK
    ) -> None:
        self._clock = clock
        self.script: deque[HttpAnswer | OSError] = deque(script)
        self.otherwise = otherwise
        self.attempts: list[Attempt] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        self.attempts.append(Attempt(self._clock(), url, dict(headers), body))
        answer = self.script.popleft() if self.script else self.otherwise
        if isinstance(answer, OSError):
            raise answer
        return answer

    @property
    def attempt_times(self) -> list[timedelta]:
        """When each attempt was made, from the first one."""
        return [a.at - self.attempts[0].at for a in self.attempts]
