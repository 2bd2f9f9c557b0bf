"""The plan limits' pure core: the token bucket (refill, burst, Retry-After), the next UTC midnight,
the daily cap's decision and its compare-and-set loop over in-memory counters (lost answers, re-reads
at the cap, the workspace's turn), what IngestLimits gives back, and the SLUICE_PLANS setting. The
Azure Table counters run on Azurite in tests/integration."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import (
    ConfigurationError,
    DailyCapExceeded,
    ServiceUnavailable,
    StorageUnavailable,
    TooManyRequests,
    http_status,
)
from shared.limits import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    CAP_REREAD_SECONDS,
    MAX_COUNTER_ATTEMPTS,
    NO_COUNT,
    DailyCap,
    DailyCount,
    IngestionRate,
    IngestLimits,
    TokenBucket,
    next_utc_midnight,
    seconds_until_next_utc_midnight,
    under_cap,
)
from shared.plans import MB, PLAN_LIMITS, Plan, PlanLimits
from shared.rawstore import MAX_BODY_BYTES
from shared.settings import PLAN_FIELD_MINIMUMS, Settings
from shared.sql.retry import backoff_delay

WORKSPACE = "6f1c3f9e-2b1e-4a55-9a0e-0d6f8d1a2b3c"
OTHER_WORKSPACE = "0a7d2c4b-5e6f-4a1b-8c9d-e0f1a2b3c4d5"
NOW = datetime(2026, 11, 22, 13, 37, 5, tzinfo=UTC)
CAPPED = PlanLimits(
    raw_retention_days=7, daily_cap_bytes=1000, ingestion_rate_bytes_per_second=100, ingestion_burst_bytes=500
)
UNCAPPED = PlanLimits(
    raw_retention_days=30,
    daily_cap_bytes=None,
    ingestion_rate_bytes_per_second=100,
    ingestion_burst_bytes=500,
)
PLANS = {Plan.FREE: CAPPED, Plan.STANDARD: UNCAPPED, Plan.PREMIUM: UNCAPPED}
BASE_SETTINGS = {
    "SLUICE_STORAGE": "UseDevelopmentStorage=true",
    "SLUICE_SQL_DIALECT": "sqlite",
    "SLUICE_SQL_CONNECTION": ".local/x.db",
    "SLUICE_SECRETS_DIR": ".local/secrets",
}


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryCounters:
    """The DailyCounters port in memory, with versions as ETags, counting the calls made to it."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, date], DailyCount] = {}
        self.calls = 0
        self.conflicts = 0
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def read(self, workspace_id: str, day: date) -> DailyCount:
        with self._lock:
            self.calls += 1
            return self.counts.get((workspace_id, day), NO_COUNT)

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int, op_id: str
    ) -> DailyCount | None:
        with self._lock:
            self.calls += 1
            if self.counts.get((workspace_id, day), NO_COUNT).etag != expected.etag:
                self.conflicts += 1
                return None
            written = DailyCount(bytes=bytes, etag=f"v{next(self._versions)}", op_id=op_id)
            self.counts[(workspace_id, day)] = written
            return written

    def bytes_on(self, day: date, workspace_id: str = WORKSPACE) -> int:
        return self.counts.get((workspace_id, day), NO_COUNT).bytes


class AlwaysConflicting(MemoryCounters):
    """Another writer always commits first."""

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int, op_id: str
    ) -> DailyCount | None:
        with self._lock:
            self.calls += 1
        return None


class FailingDecrements(MemoryCounters):
    """Storage goes down after the reservation: only increments succeed."""

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int, op_id: str
    ) -> DailyCount | None:
        if bytes < expected.bytes:
            raise StorageUnavailable("storage is down")
        return super().compare_and_set(workspace_id, day, expected=expected, bytes=bytes, op_id=op_id)


class LosingAnswers(MemoryCounters):
    """Writes commit, but the answer to the next one is lost: azure-core retries the request, and the
    retry conflicts with the version the write made itself (412 or 409), which the adapter answers None."""

    lose_next_answer = False

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int, op_id: str
    ) -> DailyCount | None:
        written = super().compare_and_set(workspace_id, day, expected=expected, bytes=bytes, op_id=op_id)
        if written is not None and self.lose_next_answer:
            self.lose_next_answer = False
            return None
        return written


class HangingWrites(MemoryCounters):
    """Storage in a brown-out for one workspace: its writes hang until released (or for
    HANG_SECONDS: a post that waits for its turn without a timeout then fails the test, not hangs it)."""

    HANG_SECONDS = 5.0

    def __init__(self, workspace_id: str) -> None:
        super().__init__()
        self.hanging_workspace_id = workspace_id
        self.writing = threading.Event()
        self.released = threading.Event()

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int, op_id: str
    ) -> DailyCount | None:
        if workspace_id == self.hanging_workspace_id:
            self.writing.set()
            self.released.wait(self.HANG_SECONDS)
        return super().compare_and_set(workspace_id, day, expected=expected, bytes=bytes, op_id=op_id)


class BlobWriteFailed(Exception):
    pass


def no_sleep(seconds: float) -> None:
    pass


def limits(counters: MemoryCounters, clock: Clock | None = None) -> IngestLimits:
    return IngestLimits(
        plans=PLANS,
        rate=IngestionRate(monotonic=clock or Clock()),
        cap=DailyCap(counters, sleep=no_sleep),
    )


def admit(ingest_limits: IngestLimits, size: int, *, plan: Plan = Plan.FREE, now: datetime = NOW) -> None:
    with ingest_limits.admitted(WORKSPACE, plan, size=size, now=now):
        pass


# -- token bucket -------------------------------------------------------------------------------------


def test_given_a_full_bucket_when_a_burst_is_taken_then_it_fits_and_one_more_byte_waits_for_the_rate() -> (
    None
):
    bucket = TokenBucket(rate=100, capacity=500, now=0.0)

    assert bucket.take(500, now=0.0) == 0.0
    assert bucket.take(1, now=0.0) == pytest.approx(0.01)


def test_given_an_empty_bucket_when_time_passes_then_it_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=100, capacity=500, now=0.0)
    bucket.take(500, now=0.0)

    assert bucket.take(250, now=2.0) == pytest.approx(0.5)  # 200 of 250 are back
    assert bucket.take(200, now=2.0) == 0.0


def test_given_a_long_idle_bucket_when_taking_then_it_never_holds_more_than_its_capacity() -> None:
    bucket = TokenBucket(rate=100, capacity=500, now=0.0)

    assert bucket.take(500, now=3600.0) == 0.0
    assert bucket.take(1, now=3600.0) > 0


def test_given_tokens_given_back_when_taking_then_they_count_up_to_the_capacity() -> None:
    bucket = TokenBucket(rate=100, capacity=500, now=0.0)
    bucket.take(400, now=0.0)

    bucket.give_back(1000)

    assert bucket.take(500, now=0.0) == 0.0
    assert bucket.take(1, now=0.0) > 0


def test_given_a_drained_workspace_when_posting_then_429_with_retry_after_rounded_up_to_when_it_fits() -> (
    None
):
    clock = Clock()
    rate = IngestionRate(monotonic=clock)
    rate.take(WORKSPACE, CAPPED, 500)
    clock.advance(0.5)  # 50 bytes back

    with pytest.raises(TooManyRequests) as refused:
        rate.take(WORKSPACE, CAPPED, 301)  # 251 missing at 100/s: 2.51 s

    assert type(refused.value) is TooManyRequests
    assert (http_status(refused.value), refused.value.code) == (429, "TooManyRequests")
    assert refused.value.retry_after_seconds == 3
    clock.advance(refused.value.retry_after_seconds)
    rate.take(WORKSPACE, CAPPED, 301)  # after Retry-After it fits


def test_given_one_workspace_drained_when_another_posts_then_its_own_bucket_is_full() -> None:
    rate = IngestionRate(monotonic=Clock())
    rate.take(WORKSPACE, CAPPED, 500)

    rate.take(OTHER_WORKSPACE, CAPPED, 500)

    with pytest.raises(TooManyRequests):
        rate.take(WORKSPACE, CAPPED, 1)


def test_given_a_drained_workspace_when_its_plan_changes_then_a_full_bucket_of_the_new_plan() -> None:
    rate = IngestionRate(monotonic=Clock())
    rate.take(WORKSPACE, CAPPED, 500)
    bigger = PlanLimits(
        raw_retention_days=30,
        daily_cap_bytes=None,
        ingestion_rate_bytes_per_second=100,
        ingestion_burst_bytes=800,
    )

    rate.take(WORKSPACE, bigger, 800)

    with pytest.raises(TooManyRequests):
        rate.take(WORKSPACE, bigger, 1)


# -- the next UTC midnight ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 22, 0, 0, 0, tzinfo=UTC), 86_400),
        (datetime(2026, 11, 22, 12, 0, 0, 500_000, tzinfo=UTC), 43_200),  # 43,199.5 rounded up
        (datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC), 1),
        (datetime(2026, 11, 22, 23, 59, 59, 999_999, tzinfo=UTC), 1),
        (datetime(2026, 12, 31, 23, 0, 0, tzinfo=UTC), 3600),  # the year ends too
        # 23:30 in UTC-05:00 is 04:30 UTC the next day: the UTC day counts, not the local one.
        (datetime(2026, 11, 22, 23, 30, tzinfo=timezone(timedelta(hours=-5))), 70_200),
    ],
)
def test_given_a_moment_when_asking_for_retry_after_then_whole_seconds_to_the_next_utc_midnight(
    now: datetime, expected: int
) -> None:
    assert seconds_until_next_utc_midnight(now) == expected


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]),
    )
)
def test_given_any_moment_when_waiting_retry_after_then_past_midnight_and_a_second_less_is_not(
    now: datetime,
) -> None:
    midnight = next_utc_midnight(now)
    wait = seconds_until_next_utc_midnight(now)

    assert midnight.time() == datetime.min.time() and midnight.tzinfo is UTC
    assert midnight.date() == now.astimezone(UTC).date() + timedelta(days=1)
    assert now + timedelta(seconds=wait) >= midnight
    assert now + timedelta(seconds=wait - 1) < midnight


# -- the daily cap ------------------------------------------------------------------------------------


def test_given_the_cap_rule_when_deciding_then_a_post_is_accepted_only_while_the_count_is_below_the_cap() -> (
    None
):
    assert under_cap(0, 1000)
    assert under_cap(999, 1000)
    assert not under_cap(1000, 1000)
    assert not under_cap(1500, 1000)
    assert not under_cap(0, 0)  # a cap of 0 stops ingestion


def test_given_posts_when_the_count_crosses_the_cap_then_the_crossing_post_accepted_the_next_refused() -> (
    None
):
    counters = MemoryCounters()
    cap = DailyCap(counters, sleep=no_sleep)
    for _ in range(3):
        cap.reserve(WORKSPACE, cap=1000, size=400, now=NOW)  # 0, 400, 800 are below the cap

    with pytest.raises(DailyCapExceeded) as refused:
        cap.reserve(WORKSPACE, cap=1000, size=1, now=NOW)

    assert counters.bytes_on(NOW.date()) == 1200  # over by less than one post
    assert (http_status(refused.value), refused.value.code) == (429, "DailyCapExceeded")
    assert refused.value.retry_after_seconds == seconds_until_next_utc_midnight(NOW) == 37_375


def test_given_a_workspace_over_its_cap_when_it_posts_again_soon_then_refused_without_a_counter_call() -> (
    None
):
    counters = MemoryCounters()
    clock = Clock()
    cap = DailyCap(counters, sleep=no_sleep, monotonic=clock)
    cap.reserve(WORKSPACE, cap=1000, size=1000, now=NOW)
    calls = counters.calls

    for _ in range(5):
        clock.advance(CAP_REREAD_SECONDS / 6)
        with pytest.raises(DailyCapExceeded):
            cap.reserve(WORKSPACE, cap=1000, size=1, now=NOW)

    assert counters.calls == calls


def test_given_a_workspace_over_its_cap_when_it_keeps_posting_then_one_read_per_reread_interval() -> None:
    counters = MemoryCounters()
    clock = Clock()
    cap = DailyCap(counters, sleep=no_sleep, monotonic=clock)
    cap.reserve(WORKSPACE, cap=1000, size=1000, now=NOW)
    calls = counters.calls

    for _ in range(3):
        clock.advance(CAP_REREAD_SECONDS)
        for _ in range(10):
            with pytest.raises(DailyCapExceeded):
                cap.reserve(WORKSPACE, cap=1000, size=1, now=NOW)

    assert counters.calls == calls + 3
    assert counters.bytes_on(NOW.date()) == 1000


def test_given_the_cap_seen_reached_when_another_instance_gives_back_then_accepted_after_a_reread() -> None:
    counters = MemoryCounters()
    clock = Clock()
    first = DailyCap(counters, sleep=no_sleep, monotonic=clock)
    second = DailyCap(counters, sleep=no_sleep, monotonic=clock)
    first.reserve(WORKSPACE, cap=1000, size=600, now=NOW)
    day = second.reserve(WORKSPACE, cap=1000, size=500, now=NOW)  # crosses the cap: 1100
    with pytest.raises(DailyCapExceeded):
        first.reserve(WORKSPACE, cap=1000, size=100, now=NOW)  # the first now remembers 1100
    second.give_back(WORKSPACE, day=day, size=500)  # the second's blob write failed: 600 again

    clock.advance(CAP_REREAD_SECONDS)
    first.reserve(WORKSPACE, cap=1000, size=100, now=NOW)

    assert counters.bytes_on(day) == 700


def test_given_a_workspace_over_its_cap_when_the_utc_day_ends_then_accepted_on_a_new_count() -> None:
    counters = MemoryCounters()
    cap = DailyCap(counters, sleep=no_sleep)
    late = datetime(2026, 11, 22, 23, 59, 59, 900_000, tzinfo=UTC)
    cap.reserve(WORKSPACE, cap=1000, size=1000, now=late)
    with pytest.raises(DailyCapExceeded) as refused:
        cap.reserve(WORKSPACE, cap=1000, size=10, now=late)
    assert refused.value.retry_after_seconds == 1

    cap.reserve(WORKSPACE, cap=1000, size=10, now=late + timedelta(seconds=refused.value.retry_after_seconds))

    assert counters.bytes_on(date(2026, 11, 22)) == 1000
    assert counters.bytes_on(date(2026, 11, 23)) == 10


def test_given_one_instance_posting_when_its_count_is_current_then_each_post_costs_one_counter_call() -> None:
    counters = MemoryCounters()
    cap = DailyCap(counters, sleep=no_sleep)

    for _ in range(5):
        cap.reserve(WORKSPACE, cap=1000, size=10, now=NOW)

    assert counters.calls == 5
    assert counters.bytes_on(NOW.date()) == 50


def test_given_two_instances_when_each_commits_in_turn_then_no_increment_is_lost() -> None:
    counters = MemoryCounters()
    first, second = DailyCap(counters, sleep=no_sleep), DailyCap(counters, sleep=no_sleep)

    for _ in range(3):
        first.reserve(WORKSPACE, cap=10_000, size=100, now=NOW)
        second.reserve(WORKSPACE, cap=10_000, size=10, now=NOW)  # each finds its remembered count old

    assert counters.bytes_on(NOW.date()) == 330
    assert counters.conflicts == 5  # every turn but the very first: conflict, read, write


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda cap: cap.reserve(WORKSPACE, cap=10_000, size=300, now=NOW), 1300),
        (lambda cap: cap.give_back(WORKSPACE, day=NOW.date(), size=300), 700),
    ],
    ids=["reservation", "give-back"],
)
def test_given_a_write_whose_answer_is_lost_when_its_retry_conflicts_with_it_then_the_change_counts_once(
    change: Callable[[DailyCap], object], expected: int
) -> None:
    counters = LosingAnswers()
    cap = DailyCap(counters, sleep=no_sleep)
    cap.reserve(WORKSPACE, cap=10_000, size=1000, now=NOW)
    counters.lose_next_answer = True

    change(cap)

    assert counters.bytes_on(NOW.date()) == expected
    assert not counters.lose_next_answer, "the answer was lost"


def test_given_an_old_count_under_the_cap_when_another_instance_crossed_it_then_refused_after_a_read() -> (
    None
):
    counters = MemoryCounters()
    first, second = DailyCap(counters, sleep=no_sleep), DailyCap(counters, sleep=no_sleep)
    first.reserve(WORKSPACE, cap=1000, size=100, now=NOW)
    second.reserve(WORKSPACE, cap=1000, size=900, now=NOW)

    with pytest.raises(DailyCapExceeded):
        first.reserve(WORKSPACE, cap=1000, size=100, now=NOW)

    assert counters.bytes_on(NOW.date()) == 1000


@given(
    cap=st.integers(min_value=0, max_value=5000),
    posts=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 700)), min_size=1, max_size=40),
)
def test_given_instances_interleaving_posts_when_reserving_then_the_count_overshoots_by_less_than_one_post(
    cap: int, posts: list[tuple[int, int]]
) -> None:
    counters = MemoryCounters()
    instances = [DailyCap(counters, sleep=no_sleep) for _ in range(3)]
    accepted: list[int] = []
    refused = 0

    for instance, size in posts:
        try:
            instances[instance].reserve(WORKSPACE, cap=cap, size=size, now=NOW)
        except DailyCapExceeded:
            refused += 1
        else:
            accepted.append(size)

    total = counters.bytes_on(NOW.date())
    assert total == sum(accepted), "no increment lost"
    assert total - (accepted[-1] if accepted else 0) < cap or not accepted, "each accepted post began below"
    if refused:
        assert total >= cap, "a post is refused only at or over the cap"


def test_given_the_counter_always_contended_when_reserving_then_bounded_jittered_retries_then_a_503() -> None:
    counters = AlwaysConflicting()
    waits: list[float] = []
    cap = DailyCap(counters, sleep=waits.append, jitter=lambda: 0.5)

    with pytest.raises(ServiceUnavailable) as unavailable:
        cap.reserve(WORKSPACE, cap=1000, size=10, now=NOW)

    assert http_status(unavailable.value) == 503
    assert unavailable.value.retry_after_seconds == 1
    writes = MAX_COUNTER_ATTEMPTS
    assert counters.calls == 2 * writes  # a read after each conflict: was that write ours after all?
    # None after the first conflict (it usually means only an old remembered count), then growing.
    assert waits == [
        backoff_delay(n, base_delay=BACKOFF_BASE_SECONDS, max_delay=BACKOFF_MAX_SECONDS, jitter=0.5)
        for n in range(1, writes - 1)
    ]
    assert all(later >= earlier for earlier, later in itertools.pairwise(waits))
    assert waits[-1] <= BACKOFF_MAX_SECONDS


def test_given_a_workspaces_counter_hanging_when_its_next_post_waits_then_a_503_and_others_unaffected() -> (
    None
):
    counters = HangingWrites(WORKSPACE)
    cap = DailyCap(counters, sleep=no_sleep, turn_timeout_seconds=0.05)
    holder = threading.Thread(
        target=cap.reserve, args=(WORKSPACE,), kwargs={"cap": 1000, "size": 1, "now": NOW}
    )
    holder.start()
    assert counters.writing.wait(HangingWrites.HANG_SECONDS), "the first post holds the workspace's turn"

    try:
        with pytest.raises(ServiceUnavailable) as unavailable:
            cap.reserve(WORKSPACE, cap=1000, size=1, now=NOW)
        cap.reserve(OTHER_WORKSPACE, cap=1000, size=1, now=NOW)
    finally:
        counters.released.set()
        holder.join()

    assert http_status(unavailable.value) == 503
    assert unavailable.value.retry_after_seconds == ServiceUnavailable.DEFAULT_RETRY_AFTER_SECONDS
    assert counters.bytes_on(NOW.date(), OTHER_WORKSPACE) == 1
    assert counters.bytes_on(NOW.date()) == 1, "only the post that held the turn"


# -- IngestLimits: order, give-backs, plans without a cap ---------------------------------------------


def test_given_a_plan_without_a_cap_when_posts_are_admitted_then_the_counters_are_never_called() -> None:
    counters = MemoryCounters()
    clock = Clock()
    ingest_limits = limits(counters, clock)

    for _ in range(10):
        admit(ingest_limits, 500, plan=Plan.STANDARD)
        clock.advance(5)

    assert counters.calls == 0


def test_given_a_post_over_the_rate_when_admitting_then_refused_before_anything_is_reserved() -> None:
    counters = MemoryCounters()
    ingest_limits = limits(counters)
    admit(ingest_limits, 500)

    with pytest.raises(TooManyRequests) as refused:
        admit(ingest_limits, 100)

    assert type(refused.value) is TooManyRequests
    assert counters.bytes_on(NOW.date()) == 500


def test_given_a_post_the_cap_refuses_when_admitting_then_its_rate_tokens_are_given_back() -> None:
    counters = MemoryCounters()
    counters.counts[(WORKSPACE, NOW.date())] = DailyCount(bytes=1000, etag="v0")  # others filled the day
    ingest_limits = limits(counters)

    with pytest.raises(DailyCapExceeded):
        admit(ingest_limits, 500)

    admit(ingest_limits, 500, plan=Plan.STANDARD)  # the whole burst is still there


def test_given_a_blob_write_that_fails_when_admitted_then_its_bytes_and_tokens_are_given_back() -> None:
    counters = MemoryCounters()
    ingest_limits = limits(counters)
    admit(ingest_limits, 200)

    with pytest.raises(BlobWriteFailed), ingest_limits.admitted(WORKSPACE, Plan.FREE, size=300, now=NOW):
        raise BlobWriteFailed

    assert counters.bytes_on(NOW.date()) == 200
    admit(ingest_limits, 300)  # its tokens are back: 200 + 300 of the 500 burst


def test_given_the_give_back_fails_too_when_the_blob_write_failed_then_the_write_error_is_raised() -> None:
    counters = FailingDecrements()
    ingest_limits = limits(counters)

    with pytest.raises(BlobWriteFailed), ingest_limits.admitted(WORKSPACE, Plan.FREE, size=300, now=NOW):
        raise BlobWriteFailed

    assert counters.bytes_on(NOW.date()) == 300, "left counted: the error is on the side of the cap"


def test_given_a_reservation_across_midnight_when_its_write_fails_then_yesterday_gets_its_bytes_back() -> (
    None
):
    counters = MemoryCounters()
    ingest_limits = limits(counters, Clock())
    late = datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC)
    admit(ingest_limits, 100, now=late)

    with pytest.raises(BlobWriteFailed), ingest_limits.admitted(WORKSPACE, Plan.FREE, size=50, now=late):
        admit(ingest_limits, 10, now=late + timedelta(seconds=2))  # today's first post, meanwhile
        raise BlobWriteFailed

    assert counters.bytes_on(date(2026, 11, 22)) == 100
    assert counters.bytes_on(date(2026, 11, 23)) == 10


# -- plans as data and SLUICE_PLANS -------------------------------------------------------------------


@pytest.mark.parametrize("plan", list(Plan))
def test_given_every_plan_when_reading_its_burst_then_it_holds_the_largest_post_ingest_accepts(
    plan: Plan,
) -> None:
    assert PLAN_LIMITS[plan].ingestion_burst_bytes >= MAX_BODY_BYTES


def test_given_the_plan_limits_when_the_setting_checks_them_then_every_field_has_a_minimum() -> None:
    assert set(PLAN_FIELD_MINIMUMS) == {f.name for f in fields(PlanLimits)}


def test_given_no_plans_setting_when_reading_settings_then_the_plans_of_shared_plans() -> None:
    assert Settings.from_env(BASE_SETTINGS).plans == PLAN_LIMITS


def test_given_overrides_when_reading_settings_then_only_the_named_fields_change() -> None:
    plans = Settings.from_env(
        BASE_SETTINGS
        | {"SLUICE_PLANS": '{"free": {"daily_cap_bytes": 1000}, "premium": {"daily_cap_bytes": null}}'}
    ).plans

    assert plans[Plan.FREE] == PlanLimits(
        raw_retention_days=7,
        daily_cap_bytes=1000,
        ingestion_rate_bytes_per_second=PLAN_LIMITS[Plan.FREE].ingestion_rate_bytes_per_second,
        ingestion_burst_bytes=PLAN_LIMITS[Plan.FREE].ingestion_burst_bytes,
    )
    assert plans[Plan.STANDARD] == PLAN_LIMITS[Plan.STANDARD]
    assert plans[Plan.PREMIUM] == PLAN_LIMITS[Plan.PREMIUM]


def test_given_a_standard_cap_and_rate_when_reading_settings_then_they_apply() -> None:
    value = (
        '{"standard": {"daily_cap_bytes": 0, "ingestion_rate_bytes_per_second": 1, "raw_retention_days": 1}}'
    )

    standard = Settings.from_env(BASE_SETTINGS | {"SLUICE_PLANS": value}).plans[Plan.STANDARD]

    assert (
        standard.daily_cap_bytes,
        standard.ingestion_rate_bytes_per_second,
        standard.raw_retention_days,
    ) == (
        0,
        1,
        1,
    )


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("{free: 1}", "not valid JSON"),
        ('["free"]', "JSON object"),
        ('{"gold": {}}', "plan='gold': expected one of free, standard, premium"),
        ('{"free": 7}', "free: expected a JSON object"),
        ('{"free": {"daily_cap": 1}}', "unknown limit free.daily_cap"),
        ('{"free": {"daily_cap_bytes": -1}}', "free.daily_cap_bytes=-1"),
        ('{"free": {"raw_retention_days": 0}}', "free.raw_retention_days=0"),
        ('{"free": {"ingestion_rate_bytes_per_second": 0}}', "free.ingestion_rate_bytes_per_second=0"),
        ('{"free": {"ingestion_rate_bytes_per_second": null}}', "free.ingestion_rate_bytes_per_second=null"),
        (f'{{"free": {{"ingestion_burst_bytes": {MAX_BODY_BYTES - 1}}}}}', f"at least {MAX_BODY_BYTES}"),
        ('{"free": {"daily_cap_bytes": 1.5}}', "free.daily_cap_bytes=1.5"),
        ('{"free": {"daily_cap_bytes": true}}', "free.daily_cap_bytes=true"),
        ('{"free": {"daily_cap_bytes": "500MB"}}', 'free.daily_cap_bytes="500MB"'),
    ],
)
def test_given_a_bad_plans_setting_when_reading_settings_then_it_fails_fast_naming_setting_and_value(
    value: str, names: str
) -> None:
    with pytest.raises(ConfigurationError, match="SLUICE_PLANS") as error:
        Settings.from_env(BASE_SETTINGS | {"SLUICE_PLANS": value})

    assert names in error.value.message


def test_given_the_free_plan_when_reading_its_limits_then_the_seeds_cap_of_500_mb_per_utc_day() -> None:
    assert PLAN_LIMITS[Plan.FREE].daily_cap_bytes == 500 * MB
    assert PLAN_LIMITS[Plan.STANDARD].daily_cap_bytes is None
    assert PLAN_LIMITS[Plan.PREMIUM].daily_cap_bytes is None
