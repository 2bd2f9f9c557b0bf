"""Retrying transient database failures: bounded attempts and time, growing jittered waits, then the last
error re-raised so the event is redelivered. Sleeping, the clock and the jitter are the test's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import DatabaseError, DatabaseUnavailable
from shared.sql.retry import backoff_delay, call_with_retries


@dataclass
class FakeTime:
    """Sleeping advances the clock; nothing waits."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@dataclass
class Flaky:
    """Raises the given errors in turn, then returns "done"; each call may take `seconds` of fake time."""

    errors: list[Exception]
    time: FakeTime
    seconds: float = 0.0
    calls: int = 0
    raised: list[Exception] = field(default_factory=list)

    def __call__(self) -> str:
        self.calls += 1
        self.time.now += self.seconds
        if self.errors:
            self.raised.append(self.errors.pop(0))
            raise self.raised[-1]
        return "done"


def unavailable(n: int) -> list[Exception]:
    return [DatabaseUnavailable(f"failover {i}") for i in range(1, n + 1)]


def retry(operation: Callable[[], str], time: FakeTime, *, max_total_seconds: float = 30.0) -> str:
    return call_with_retries(
        operation,
        attempts=4,
        base_delay=0.5,
        max_total_seconds=max_total_seconds,
        sleep=time.sleep,
        clock=time.clock,
        jitter=lambda: 0.5,
    )


def test_given_two_transient_failures_when_calling_then_third_call_succeeds_after_growing_waits() -> None:
    time = FakeTime()
    operation = Flaky(unavailable(2), time)
    assert retry(operation, time) == "done"
    assert operation.calls == 3
    assert time.sleeps == [0.375, 0.75]  # 0.5 then 1.0 ceilings, each half fixed + half * jitter 0.5


def test_given_database_error_when_calling_then_not_retried() -> None:
    time = FakeTime()
    refused = DatabaseError("The tsql database refused a statement: (2627) duplicate key")
    operation = Flaky([refused], time)
    with pytest.raises(DatabaseError) as raised:
        retry(operation, time)
    assert raised.value is refused
    assert (operation.calls, time.sleeps) == (1, [])


def test_given_only_transient_failures_when_attempts_exhausted_then_last_error_raised() -> None:
    time = FakeTime()
    operation = Flaky(unavailable(10), time)
    with pytest.raises(DatabaseUnavailable) as raised:
        retry(operation, time)
    assert raised.value is operation.raised[-1]
    assert str(raised.value) == "failover 4"
    assert operation.calls == 4
    assert time.sleeps == [0.375, 0.75, 1.5]


def test_given_slow_failures_when_next_wait_would_pass_total_bound_then_gives_up_early() -> None:
    time = FakeTime()
    operation = Flaky(unavailable(10), time, seconds=12.0)  # e.g. a query timeout each time
    with pytest.raises(DatabaseUnavailable, match="failover 2"):
        retry(operation, time, max_total_seconds=25.0)
    # 12 s + 0.375 s wait + 12 s: a second wait would end past 25 s, so no third call.
    assert (operation.calls, time.sleeps) == (2, [0.375])


def test_given_retries_when_calling_then_each_logged_with_its_attempt_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    with caplog.at_level(logging.WARNING, logger="sluice.sql.retry"):
        retry(Flaky(unavailable(2), time), time)
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "database unavailable on attempt 1 of 4",
        "database unavailable on attempt 2 of 4",
    ]


def test_given_caller_classification_when_calling_then_it_decides_what_is_transient() -> None:
    time = FakeTime()
    operation = Flaky([TimeoutError("read timed out")], time)
    result = call_with_retries(
        operation,
        attempts=2,
        base_delay=0.1,
        sleep=time.sleep,
        is_transient=lambda e: isinstance(e, TimeoutError),
    )
    assert (result, operation.calls) == ("done", 2)


def test_given_no_attempt_allowed_when_calling_then_value_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        call_with_retries(lambda: "done", attempts=0)


@given(
    base=st.floats(min_value=0.01, max_value=5.0),
    cap=st.floats(min_value=0.01, max_value=60.0),
    jitters=st.lists(st.floats(min_value=0.0, max_value=1.0, exclude_max=True), min_size=8, max_size=8),
)
def test_given_any_jitter_then_waits_within_half_to_full_ceiling_and_growing_below_the_cap(
    base: float, cap: float, jitters: list[float]
) -> None:
    delays = [
        backoff_delay(attempt, base_delay=base, max_delay=cap, jitter=j)
        for attempt, j in enumerate(jitters, start=1)
    ]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(cap, base * 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    uncapped = [d for a, d in enumerate(delays, start=1) if base * 2.0 ** (a - 1) <= cap]
    assert all(earlier <= later for earlier, later in pairwise(uncapped))
