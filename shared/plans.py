"""Pricing plans as data: how long raw data is kept, how much a workspace may ingest per UTC day, and
how fast. Aggregates are kept AGGREGATE_RETENTION_DAYS whatever the plan.

The seeds' plans: Free keeps 7 days and caps ingestion at 500 MB per workspace per UTC day; Standard
keeps 30 days; Premium keeps 365 days. The ingestion rate limit (a token bucket per workspace, refilled
at `ingestion_rate_bytes_per_second`, holding at most `ingestion_burst_bytes`, as Loki's
`ingestion_rate_mb` / `ingestion_burst_size_mb`) protects the service from one tenant's flood; every
burst holds at least one post of the largest size ingest accepts, so no valid post is refused for good.
Sizes count JSON bytes as received, decompressed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

AGGREGATE_RETENTION_DAYS = 390
MB = 1024 * 1024


class Plan(StrEnum):
    FREE = "free"
    STANDARD = "standard"
    PREMIUM = "premium"


@dataclass(frozen=True, slots=True)
class PlanLimits:
    raw_retention_days: int
    daily_cap_bytes: int | None  # None: no cap
    ingestion_rate_bytes_per_second: int
    ingestion_burst_bytes: int


PLAN_LIMITS: dict[Plan, PlanLimits] = {
    Plan.FREE: PlanLimits(
        raw_retention_days=7,
        daily_cap_bytes=500 * MB,
        ingestion_rate_bytes_per_second=4 * MB,
        ingestion_burst_bytes=32 * MB,
    ),
    Plan.STANDARD: PlanLimits(
        raw_retention_days=30,
        daily_cap_bytes=None,
        ingestion_rate_bytes_per_second=32 * MB,
        ingestion_burst_bytes=128 * MB,
    ),
    Plan.PREMIUM: PlanLimits(
        raw_retention_days=365,
        daily_cap_bytes=None,
        ingestion_rate_bytes_per_second=128 * MB,
        ingestion_burst_bytes=512 * MB,
    ),
}
DEFAULT_PLAN = Plan.STANDARD
