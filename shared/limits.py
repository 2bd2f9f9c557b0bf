"""The plan's ingestion limits, checked before a post is stored: an ingestion rate with burst, and a
daily cap. Both count the post's JSON bytes, decompressed.

Rate: a token bucket (bytes) per workspace in each instance, refilled at the plan's
`ingestion_rate_bytes_per_second` and holding at most `ingestion_burst_bytes`, like Loki's `local`
ingestion rate strategy: every instance limits on its own, so N instances together admit up to N times
the rate. It protects the service from one tenant's flood; it is not a quota (the cap is). A post that
does not fit is refused with TooManyRequests, Retry-After = the seconds until it would fit.

Daily cap: one counter per workspace and UTC day in a store shared by every instance, updated by
compare-and-set (optimistic concurrency), so no increment is lost. A post is accepted when the day's
count is below the cap at the moment its increment commits: concurrent senders at the boundary overshoot
by at most one post. At or over the cap: DailyCapExceeded, Retry-After = the seconds to the next UTC
midnight. The increment commits before the blob is written (reserve, then store); a post whose blob
write then fails gives its bytes back, best effort (see IngestLimits.admitted for the trade-off).
Plans without a cap cost no counter call at all.

Each write stores an id of its own with the count: the SDK retries a write whose answer was lost, and
the retry then conflicts with the version the write made itself; reading the count back and finding
that id tells this apart from another writer's commit, so the change is applied once, not twice.
An instance that saw the cap reached refuses without a call, but re-reads the count at most every
CAP_REREAD_SECONDS, so bytes another instance gives back are accepted again within that time.

Order: rate first, so a post the rate refuses reserves nothing against the cap; a post the cap refuses
gives its rate tokens back. Nothing refused, or not stored, costs anything against either limit."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from shared.errors import DailyCapExceeded, SluiceError, StorageUnavailable, TooManyRequests
from shared.plans import Plan, PlanLimits
from shared.sql.retry import backoff_delay
from shared.telemetry import workspace_log

# A conflict on the day's counter means another instance committed first: re-read and try again, at
# most this many writes, after a jittered wait growing from the base to the max (backoff_delay's).
MAX_COUNTER_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 0.01
BACKOFF_MAX_SECONDS = 0.2
# Contention, not an outage: worth retrying soon.
CONTENDED_RETRY_AFTER_SECONDS = 1
# A remembered count at or over the cap refuses without a call, and is re-read at most this often: the
# longest that bytes given back by another instance go unnoticed here.
CAP_REREAD_SECONDS = 30.0
# The longest a post waits for its workspace's turn at the counter. The request ahead holds the turn
# across storage calls; waiting longer means storage is slow, and the post is refused (503) rather than
# tie up a worker thread that other workspaces' posts need.
TURN_TIMEOUT_SECONDS = 5.0

log = logging.getLogger("sluice.limits")


def utc_day(now: datetime) -> date:
    return now.astimezone(UTC).date()


def next_utc_midnight(now: datetime) -> datetime:
    return datetime.combine(utc_day(now) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def seconds_until_next_utc_midnight(now: datetime) -> int:
    """Whole seconds, rounded up (a client that waits this long is past midnight), at least 1."""
    return max(1, math.ceil((next_utc_midnight(now) - now).total_seconds()))


def under_cap(counted: int, cap: int) -> bool:
    """The cap rule: a post is accepted while the day's count, before its own bytes, is below the cap."""
    return counted < cap


class TokenBucket:
    """Holds up to `capacity` tokens (bytes), refilled continuously at `rate` per second of the
    monotonic clock the caller passes. An amount larger than the capacity never fits: plans keep their
    burst at least one post of the largest size ingest accepts (shared.settings checks it)."""

    def __init__(self, *, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._updated = now

    def take(self, amount: int, *, now: float) -> float:
        """Takes `amount` and returns 0.0, or takes nothing and returns the seconds until it fits."""
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if amount <= self._tokens:
            self._tokens -= amount
            return 0.0
        return (amount - self._tokens) / self.rate

    def give_back(self, amount: int) -> None:
        self._tokens = min(self.capacity, self._tokens + amount)


class IngestionRate:
    """A token bucket per workspace, in this instance only. A plan change (another rate or burst)
    starts the workspace on a full bucket of the new plan."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, workspace_id: str, limits: PlanLimits, size: int) -> None:
        """Raises TooManyRequests when the workspace's bucket does not hold `size` bytes now."""
        rate, burst = limits.ingestion_rate_bytes_per_second, limits.ingestion_burst_bytes
        with self._lock:
            now = self._monotonic()
            bucket = self._buckets.get(workspace_id)
            if bucket is None or (bucket.rate, bucket.capacity) != (rate, burst):
                bucket = self._buckets[workspace_id] = TokenBucket(rate=rate, capacity=burst, now=now)
            wait = bucket.take(size, now=now)
        if wait:
            raise TooManyRequests(
                f"The workspace's ingestion rate ({rate} bytes per second, bursts up to {burst} bytes) is "
                "exceeded; retry after the time in Retry-After.",
                retry_after_seconds=math.ceil(wait),
                workspace_id=workspace_id,
            )

    def give_back(self, workspace_id: str, size: int) -> None:
        with self._lock:
            bucket = self._buckets.get(workspace_id)
            if bucket is not None:
                bucket.give_back(size)


@dataclass(frozen=True, slots=True)
class DailyCount:
    """A workspace's accepted bytes on one UTC day, at one version of the counter."""

    bytes: int
    etag: str | None  # None: no counter exists for that day (yet)
    op_id: str | None = None  # the write that made this version, as passed to compare_and_set


NO_COUNT = DailyCount(bytes=0, etag=None)


class DailyCounters(Protocol):
    """Where the per-workspace, per-UTC-day counters live, shared by every instance."""

    def read(self, workspace_id: str, day: date) -> DailyCount:
        """The current count; NO_COUNT when there is no counter for that day."""

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int, op_id: str
    ) -> DailyCount | None:
        """Sets the counter to `bytes`, stored with `op_id`, only if it is still at `expected` (creates
        it when `expected.etag` is None); returns the new count, or None when it is not (another writer
        committed first, the counter was created or removed meanwhile, or this very write committed
        and a retry of it after a lost answer found it: then a read returns `op_id`)."""


class _RememberedCount:
    """This instance's last known count of one workspace, and when storage last showed it: the next
    change is tried against it directly (one call, not two), and a count at or over the cap refuses
    without any call while it is recent. The lock makes this instance's requests for the workspace
    take turns, so they do not contend with each other on the counter."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._day: date | None = None
        self._count = NO_COUNT
        self._learned_at = -math.inf  # monotonic seconds

    def on(self, day: date) -> DailyCount:
        # A day not seen yet most likely has no counter: try to create it, reading only on conflict.
        return self._count if day == self._day else NO_COUNT

    def learned_within(self, seconds: float, *, day: date, now: float) -> bool:
        return day == self._day and now - self._learned_at < seconds

    def remember(self, day: date, count: DailyCount, *, now: float) -> None:
        if self._day is None or day >= self._day:  # a late give-back for yesterday keeps today's count
            self._day, self._count, self._learned_at = day, count, now


class DailyCap:
    """Reserves and gives back bytes of the day's count by compare-and-set on the shared counters,
    retrying conflicts (bounded, with jittered backoff; then StorageUnavailable, a 503)."""

    def __init__(
        self,
        counters: DailyCounters,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
        max_attempts: int = MAX_COUNTER_ATTEMPTS,
        turn_timeout_seconds: float = TURN_TIMEOUT_SECONDS,
    ) -> None:
        self._counters = counters
        self._sleep = sleep
        self._jitter = jitter
        self._monotonic = monotonic
        self._max_attempts = max_attempts
        self._turn_timeout_seconds = turn_timeout_seconds
        self._remembered: dict[str, _RememberedCount] = {}
        self._lock = threading.Lock()

    def reserve(self, workspace_id: str, *, cap: int, size: int, now: datetime) -> date:
        """Adds `size` to the workspace's count for the UTC day of `now` and returns that day; raises
        DailyCapExceeded (nothing added) when the count is at or over `cap`."""
        day = utc_day(now)

        def add(counted: int) -> int:
            if not under_cap(counted, cap):
                raise DailyCapExceeded(
                    f"The workspace's daily cap of {cap} bytes is reached; ingestion resumes at 00:00 UTC.",
                    retry_after_seconds=seconds_until_next_utc_midnight(now),
                    workspace_id=workspace_id,
                )
            return counted + size

        count = self._change(workspace_id, day, add, cap=cap)
        if count.bytes >= cap:  # only the post that crosses the cap gets here; later ones raise in add
            workspace_log(log, workspace_id).warning(
                "daily cap of %d bytes reached (%d accepted on %s): refused until 00:00 UTC",
                cap,
                count.bytes,
                day,
            )
        return day

    def give_back(self, workspace_id: str, *, day: date, size: int) -> None:
        """Takes `size` off the day's count, best effort: a failure is logged, not raised (the post
        then stays counted, which errs on the side of the cap)."""
        try:
            self._change(workspace_id, day, lambda counted: max(0, counted - size))
        except SluiceError as error:
            workspace_log(log, workspace_id).warning(
                "could not give back %d bytes of %s's count: %s", size, day, error.message
            )

    def _change(
        self, workspace_id: str, day: date, new_bytes: Callable[[int], int], *, cap: int | None = None
    ) -> DailyCount:
        """Sets the day's count to new_bytes(count), by compare-and-set from the remembered count. With
        the `cap` at which new_bytes refuses, a remembered count at or over it that storage has not
        shown for CAP_REREAD_SECONDS is read first: another instance may have given bytes back."""
        remembered = self._remembered_for(workspace_id)
        with self._turn(workspace_id, remembered):
            count = remembered.on(day)
            if (
                cap is not None
                and not under_cap(count.bytes, cap)
                and not remembered.learned_within(CAP_REREAD_SECONDS, day=day, now=self._monotonic())
            ):
                count = self._read(workspace_id, day, remembered)
            for attempt in range(self._max_attempts):
                op_id = uuid.uuid4().hex
                written = self._counters.compare_and_set(
                    workspace_id, day, expected=count, bytes=new_bytes(count.bytes), op_id=op_id
                )
                if written is not None:
                    remembered.remember(day, written, now=self._monotonic())
                    return written
                # Another writer committed first; or this write did, its answer was lost, and the
                # SDK's retry of it conflicted with the version it had made: the op id read tells.
                # No wait after a first conflict (it usually means only that our count was old), nor
                # after the last (no write follows; the read only checks the op id).
                if 0 < attempt < self._max_attempts - 1:
                    self._sleep(self._backoff(attempt))
                count = self._read(workspace_id, day, remembered)
                if count.op_id == op_id:
                    return count
        raise StorageUnavailable(
            f"The daily count of workspace {workspace_id} stayed contended for {self._max_attempts} tries.",
            retry_after_seconds=CONTENDED_RETRY_AFTER_SECONDS,
        )

    def _read(self, workspace_id: str, day: date, remembered: _RememberedCount) -> DailyCount:
        count = self._counters.read(workspace_id, day)
        remembered.remember(day, count, now=self._monotonic())
        return count

    @contextmanager
    def _turn(self, workspace_id: str, remembered: _RememberedCount) -> Iterator[None]:
        # Storage's own outage error and Retry-After: the requests ahead are stuck in storage calls.
        if not remembered.lock.acquire(timeout=self._turn_timeout_seconds):
            raise StorageUnavailable(
                f"The daily count of workspace {workspace_id} was busy for {self._turn_timeout_seconds:g} s: "
                "storage is slow."
            )
        try:
            yield
        finally:
            remembered.lock.release()

    def _backoff(self, conflicts: int) -> float:
        return backoff_delay(
            conflicts, base_delay=BACKOFF_BASE_SECONDS, max_delay=BACKOFF_MAX_SECONDS, jitter=self._jitter()
        )

    def _remembered_for(self, workspace_id: str) -> _RememberedCount:
        with self._lock:
            return self._remembered.setdefault(workspace_id, _RememberedCount())


class IngestLimits:
    """The rate and the cap of each workspace's plan, around the storing of one post."""

    def __init__(self, *, plans: Mapping[Plan, PlanLimits], rate: IngestionRate, cap: DailyCap) -> None:
        self._plans = plans
        self._rate = rate
        self._cap = cap

    @contextmanager
    def admitted(self, workspace_id: str, plan: Plan, *, size: int, now: datetime) -> Iterator[None]:
        """Admits a post of `size` JSON bytes received at `now` (raises TooManyRequests or
        DailyCapExceeded otherwise), then runs the block that stores it. If the block fails, the post
        gives back its rate tokens and, best effort, its bytes of the day's count.

        The trade-off of giving back: a blob write that fails after the service committed it (a lost
        answer) is then stored but not counted, and the client's retry counted once: the cap undercounts
        by that post. Keeping the reservation instead would charge every really failed post against the
        customer's cap. Failures that hide a commit are rare, a refused post is the customer's loss, so
        the count follows what was acknowledged. A give-back that itself fails (storage down), or an
        instance that dies between reserve and store, leaves the post counted: the error is then on
        the side of the cap."""
        limits = self._plans[plan]
        self._rate.take(workspace_id, limits, size)
        try:
            day = (
                None
                if limits.daily_cap_bytes is None
                else self._cap.reserve(workspace_id, cap=limits.daily_cap_bytes, size=size, now=now)
            )
            try:
                yield
            except Exception:
                if day is not None:
                    self._cap.give_back(workspace_id, day=day, size=size)
                raise
        except Exception:
            self._rate.give_back(workspace_id, size)
            raise
