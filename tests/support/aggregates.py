"""Aggregates in the order the list queries return them, to compare with what was applied."""

from __future__ import annotations

from shared.aggregate import Aggregates


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
