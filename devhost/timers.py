"""Timer triggers on their NCRONTAB schedules (six fields, seconds first, UTC), run on one scheduler
thread with an `azure.functions.TimerRequest` as the Functions host passes it. `runOnStartup` is
honoured; schedule monitoring across restarts (`useMonitor`) is not kept locally."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest
from croniter import croniter

from devhost.functions import FunctionSpec
from devhost.worker import BackgroundWorker

NCRONTAB_FIELDS = ("second", "minute", "hour", "day", "month", "day-of-week")
# A run that starts later than this after its scheduled time is reported as past due.
PAST_DUE_AFTER = timedelta(seconds=1)
# Waits are re-evaluated at least this often, so a wall-clock change is noticed.
MAX_WAIT_SECONDS = 60.0

log = logging.getLogger("sluice.devhost.timers")


def ncrontab_to_croniter(expression: str) -> str:
    """NCRONTAB puts seconds first; croniter's six-field form puts them last."""
    fields = expression.split()
    if len(fields) != len(NCRONTAB_FIELDS):
        raise ValueError(
            f"schedule {expression!r}: NCRONTAB needs {len(NCRONTAB_FIELDS)} fields "
            f"({' '.join(NCRONTAB_FIELDS)})"
        )
    converted = " ".join([*fields[1:], fields[0]])
    if not croniter.is_valid(converted):
        raise ValueError(f"schedule {expression!r} is not a valid NCRONTAB expression")
    return converted


def next_occurrence(expression: str, after: datetime) -> datetime:
    """The first time strictly after `after` (an aware datetime) that the schedule names, in UTC."""
    moment: datetime = croniter(ncrontab_to_croniter(expression), after.astimezone(UTC)).get_next(datetime)
    return moment.astimezone(UTC)


@dataclass(slots=True)
class _Timer:
    function: FunctionSpec
    schedule: str
    due: datetime

    @classmethod
    def of(cls, function: FunctionSpec, now: datetime) -> _Timer:
        schedule = str(function.trigger["schedule"])
        return cls(function=function, schedule=schedule, due=next_occurrence(schedule, now))


class TimerScheduler(BackgroundWorker):
    def __init__(
        self,
        functions: Sequence[FunctionSpec],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clock = clock
        now = clock()
        self._timers = [_Timer.of(f, now) for f in functions]
        super().__init__(name="devhost-timers")

    def _run(self) -> None:
        for timer in self._timers:
            if timer.function.trigger.get("runOnStartup") is True:
                self._fire(timer, scheduled=self._clock())
        while not self._stop.is_set():
            now = self._clock()
            for timer in self._timers:
                if timer.due <= now and not self._stop.is_set():
                    self._fire(timer, scheduled=timer.due)
                    timer.due = next_occurrence(timer.schedule, self._clock())
            earliest = min(t.due for t in self._timers)
            self._stop.wait(min(max((earliest - self._clock()).total_seconds(), 0.0), MAX_WAIT_SECONDS))

    def _fire(self, timer: _Timer, *, scheduled: datetime) -> None:
        started = self._clock()
        request = TimerRequest(
            past_due=started - scheduled > PAST_DUE_AFTER,
            schedule={"AdjustForDST": True},
            schedule_status={
                "Last": scheduled.isoformat(),
                "Next": next_occurrence(timer.schedule, scheduled).isoformat(),
                "LastUpdated": started.isoformat(),
            },
        )
        log.info("running timer function %s (past due: %s)", timer.function.name, request.past_due)
        try:
            timer.function.invoke(request)
        except Exception:
            log.exception("timer function %s failed", timer.function.name)
