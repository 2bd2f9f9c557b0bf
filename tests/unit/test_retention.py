"""Retention rules: nothing inside a plan's window is ever deleted; every day wholly outside it is."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from shared.ids import RawBlobName
from shared.plans import PLAN_LIMITS, Plan
from shared.retention import expired_days, purge_raw
from shared.workspaces import Workspace, WorkspaceState
from tests.unit.fakes import MemoryRawStore

# Any time zone: the window is counted in UTC days whatever offset the caller's clock carries.
moments = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2035, 12, 31),
    timezones=st.sampled_from([UTC, *(timezone(timedelta(minutes=m)) for m in (-720, -300, 330, 840))]),
)
day_sets = st.sets(st.dates(min_value=date(2019, 1, 1), max_value=date(2036, 1, 1)), max_size=60)


@given(now=moments, days=day_sets, plan=st.sampled_from(list(Plan)))
def test_given_any_days_when_choosing_expired_then_window_is_kept_and_outside_is_not(
    now: datetime, days: set[date], plan: Plan
) -> None:
    window = timedelta(days=PLAN_LIMITS[plan].raw_retention_days)

    expired = set(expired_days(days, now=now, retention_days=window.days))

    for day in days:
        day_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        # A day is deleted exactly when its last instant is already older than the window.
        assert (day in expired) == (day_end <= now - window)


def test_given_cutoff_at_midnight_when_choosing_then_boundary_day_kept_until_wholly_out() -> None:
    # Free keeps 7 days: at 2026-11-22 00:00, 11-14 ended at 11-15 00:00 = now - 7 days exactly.
    days = [date(2026, 11, 14), date(2026, 11, 15)]
    assert expired_days(days, now=datetime(2026, 11, 22, tzinfo=UTC), retention_days=7) == [
        date(2026, 11, 14)
    ]
    almost = datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC)
    assert expired_days(days, now=almost, retention_days=7) == []


def test_given_store_with_days_when_purging_then_only_expired_prefixes_go() -> None:
    store = MemoryRawStore()
    workspace = Workspace(
        workspace_id="0c6d2a44-2a3f-4f3e-9c7e-1a2b3c4d5e6f",
        plan=Plan.FREE,
        state=WorkspaceState.ACTIVE,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    now = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    for offset in range(12):
        moment = now - timedelta(days=offset)
        for _ in range(2):
            name = str(RawBlobName.new(moment, "Syslog"))
            store.put_raw(workspace.workspace_id, name, b"x", metadata={})

    report = purge_raw(workspace, now=now, raw_store=store)

    kept_days = store.list_raw_days(workspace.workspace_id)
    assert kept_days == [(now - timedelta(days=offset)).date() for offset in range(7, -1, -1)]
    assert report.days_deleted == [(now - timedelta(days=offset)).date() for offset in range(11, 7, -1)]
    assert report.blobs_deleted == 8
    assert purge_raw(workspace, now=now, raw_store=store).blobs_deleted == 0
