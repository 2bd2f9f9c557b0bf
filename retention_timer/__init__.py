"""Daily at 02:00 UTC: purges what is past each workspace's windows (raw days, aggregates, ledger) and
removes deleted workspaces whose grace period is over."""

import azure.functions as func

from shared.retention import Retention
from shared.runtime import services, utc_now


def main(timer: func.TimerRequest) -> None:
    Retention.from_services(services()).run(now=utc_now())
