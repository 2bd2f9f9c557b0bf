"""Daily at 02:00 UTC: deletes raw day prefixes past each workspace's plan retention."""

import azure.functions as func

from shared.retention import run_retention
from shared.runtime import services, utc_now


def main(timer: func.TimerRequest) -> None:
    current = services()
    run_retention(now=utc_now(), registry=current.registry, raw_store=current.raw_store, audit=current.audit)
