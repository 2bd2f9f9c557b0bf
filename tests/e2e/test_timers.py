"""NCRONTAB schedules (seconds first) on croniter (seconds last), and the scheduler thread."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from azure.functions.timer import TimerRequest

from devhost.functions import FunctionSpec
from devhost.timers import TimerScheduler, ncrontab_to_croniter, next_occurrence

WAIT_SECONDS = 5.0


@pytest.mark.parametrize(
    ("ncrontab", "croniter_form"),
    [
        ("0 0 2 * * *", "0 2 * * * 0"),
        ("*/15 * * * * *", "* * * * * */15"),
        ("0 30 9 * * 1-5", "30 9 * * 1-5 0"),
        ("5 0 0 1 Jan *", "0 0 1 Jan * 5"),
    ],
)
def test_given_an_ncrontab_expression_then_seconds_move_to_the_end(ncrontab: str, croniter_form: str) -> None:
    assert ncrontab_to_croniter(ncrontab) == croniter_form


@pytest.mark.parametrize("expression", ["0 2 * * *", "0 0 0 2 * * * *", "", "61 0 2 * * *", "0 0 25 * * *"])
def test_given_a_malformed_expression_then_it_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="schedule"):
        ncrontab_to_croniter(expression)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # The retention timer: 02:00:00 UTC daily.
        ("0 0 2 * * *", datetime(2024, 1, 1, 3, 0, tzinfo=UTC), datetime(2024, 1, 2, 2, 0, tzinfo=UTC)),
        ("0 0 2 * * *", datetime(2024, 1, 1, 1, 59, 59, tzinfo=UTC), datetime(2024, 1, 1, 2, 0, tzinfo=UTC)),
        # Strictly after: a run at the scheduled instant schedules the next day.
        ("0 0 2 * * *", datetime(2024, 1, 1, 2, 0, tzinfo=UTC), datetime(2024, 1, 2, 2, 0, tzinfo=UTC)),
        # The seconds field is the first one.
        (
            "*/10 * * * * *",
            datetime(2024, 1, 1, 12, 0, 5, tzinfo=UTC),
            datetime(2024, 1, 1, 12, 0, 10, tzinfo=UTC),
        ),
        # Weekdays only: from Friday evening to Monday morning.
        ("0 30 9 * * 1-5", datetime(2024, 1, 5, 18, 0, tzinfo=UTC), datetime(2024, 1, 8, 9, 30, tzinfo=UTC)),
    ],
)
def test_given_a_schedule_then_the_next_occurrence_is_the_first_match_after(
    expression: str, after: datetime, expected: datetime
) -> None:
    assert next_occurrence(expression, after) == expected


def _timer(
    name: str, schedule: str, *, run_on_startup: bool, calls: list[object], fired: threading.Event
) -> FunctionSpec:
    def main(timer: object) -> None:
        calls.append(timer)
        fired.set()

    trigger = {"type": "timerTrigger", "name": "timer", "schedule": schedule, "runOnStartup": run_on_startup}
    return FunctionSpec(name=name, trigger=trigger, entry=main)


def test_given_run_on_startup_then_the_function_runs_at_start_and_is_not_past_due() -> None:
    calls: list[object] = []
    fired = threading.Event()
    scheduler = TimerScheduler(
        [_timer("daily", "0 0 2 * * *", run_on_startup=True, calls=calls, fired=fired)]
    )

    scheduler.start()
    try:
        assert fired.wait(WAIT_SECONDS)
    finally:
        scheduler.stop(WAIT_SECONDS)

    (request,) = calls
    assert isinstance(request, TimerRequest)
    assert request.past_due is False
    assert request.schedule_status["Next"].startswith(
        next_occurrence("0 0 2 * * *", datetime.now(UTC)).date().isoformat()
    )


def test_given_a_schedule_every_second_then_the_function_runs_on_it() -> None:
    calls: list[object] = []
    fired = threading.Event()
    scheduler = TimerScheduler(
        [_timer("tick", "* * * * * *", run_on_startup=False, calls=calls, fired=fired)]
    )

    scheduler.start()
    try:
        assert fired.wait(WAIT_SECONDS)
    finally:
        scheduler.stop(WAIT_SECONDS)

    assert calls


def test_given_a_failing_timer_function_then_the_scheduler_keeps_running() -> None:
    fired = threading.Event()
    attempts: list[int] = []

    def main(timer: object) -> None:
        attempts.append(1)
        if len(attempts) >= 2:
            fired.set()
        raise RuntimeError("boom")

    trigger = {"type": "timerTrigger", "name": "timer", "schedule": "* * * * * *", "runOnStartup": True}
    scheduler = TimerScheduler([FunctionSpec(name="failing", trigger=trigger, entry=main)])

    scheduler.start()
    try:
        assert fired.wait(WAIT_SECONDS)
    finally:
        scheduler.stop(WAIT_SECONDS)


def test_given_a_run_that_starts_late_then_it_is_past_due() -> None:
    calls: list[object] = []
    fired = threading.Event()
    hourly = _timer("hourly", "0 0 * * * *", run_on_startup=False, calls=calls, fired=fired)
    readings = iter([datetime(2024, 1, 1, 0, 30, tzinfo=UTC)])  # at start; then 5 s after 01:00

    scheduler = TimerScheduler(
        [hourly], clock=lambda: next(readings, datetime(2024, 1, 1, 1, 0, 5, tzinfo=UTC))
    )
    scheduler.start()
    try:
        assert fired.wait(WAIT_SECONDS)
    finally:
        scheduler.stop(WAIT_SECONDS)

    (request,) = calls
    assert isinstance(request, TimerRequest)
    assert request.past_due is True
    assert request.schedule_status["Last"] == "2024-01-01T01:00:00+00:00"
    assert request.schedule_status["Next"] == "2024-01-01T02:00:00+00:00"
