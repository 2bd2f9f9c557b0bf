"""Aggregates of given records, and in the order the list queries return them."""

from __future__ import annotations

import gzip
from datetime import datetime
from typing import Any

import orjson

from shared.aggregate import Aggregates, HourlyAggregator
from shared.rawreader import RecordStream
from shared.rawstore import MAX_BODY_BYTES


def sorted_aggregates(aggregates: Aggregates) -> Aggregates:
    return Aggregates(
        usage=sorted(aggregates.usage, key=lambda r: (r.hour, r.log_type, r.computer)),
        perf=sorted(
            aggregates.perf,
            key=lambda r: (r.hour, r.computer, r.object_name, r.counter_name, r.instance_name),
        ),
        events=sorted(aggregates.events, key=lambda r: (r.hour, r.log_type, r.computer, r.event_id, r.level)),
        syslog=sorted(aggregates.syslog, key=lambda r: (r.hour, r.computer, r.facility, r.severity)),
    )


def aggregate(
    records: list[dict[str, Any]], *, log_type: str, received_at: datetime, time_field: str | None = None
) -> Aggregates:
    """What processing aggregates from a blob holding `records` as compact JSON."""
    aggregator = HourlyAggregator(log_type=log_type, time_field=time_field, received_at=received_at)
    for window in RecordStream(
        gzip.compress(orjson.dumps(records)), record_type=aggregator.record_type, max_bytes=MAX_BODY_BYTES
    ):
        aggregator.add(window)
    return aggregator.result()
