"""Pricing plans as data: how long raw data is kept. Aggregates are kept 390 days whatever the plan."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

AGGREGATE_RETENTION_DAYS = 390


class Plan(StrEnum):
    FREE = "free"
    STANDARD = "standard"
    PREMIUM = "premium"


@dataclass(frozen=True, slots=True)
class PlanLimits:
    raw_retention_days: int


PLAN_LIMITS: dict[Plan, PlanLimits] = {
    Plan.FREE: PlanLimits(raw_retention_days=7),
    Plan.STANDARD: PlanLimits(raw_retention_days=30),
    Plan.PREMIUM: PlanLimits(raw_retention_days=365),
}
DEFAULT_PLAN = Plan.STANDARD
