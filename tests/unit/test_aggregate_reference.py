"""The aggregator against a reference written straight from the rules, on random records of every kind
read in windows so small that a window spans hours and a key's records span windows: the same rows,
whatever the order of the records, the window size, or how a record spells a name.

The rules the reference states: each record counts in its TimeGenerated hour (shared.records); a name
is the portable text of its value (key_text), where equal JSON numbers are one name (4 and 4.0 are
"4") and true and false are not numbers; Perf statistics take the values that are numbers; an event
counts under its integer EventID and its first level field that is present."""

from __future__ import annotations

import gzip
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.aggregate import (
    Aggregates,
    EventRow,
    HourlyAggregator,
    PerfRow,
    SyslogRow,
    UsageRow,
    counter_value_of,
    event_id_of,
    key_text,
)
from shared.rawreader import RecordStream
from shared.rawstore import MAX_BODY_BYTES
from shared.records import RecordKind, kind_of, time_generated
from tests.support.aggregates import sorted_aggregates

RECEIVED = datetime(2026, 11, 22, 13, 37, tzinfo=UTC)
TIME_FIELD = "TimeGenerated"

# Names that collide in Python but not in JSON (True == 1 == 1.0), equal numbers spelled two ways, text
# that key_text changes, and values that are no name at all.
names = st.one_of(
    st.sampled_from(["web-1", "web-2", "web-1 ", "", "4", "True"]),
    st.sampled_from([0, 1, 4, 4624, -1, 0.0, 1.0, 4.0, 4.5, True, False, None]),
    st.lists(st.sampled_from([1, True, "a"]), max_size=2),
)
times = st.sampled_from(
    [
        "2026-11-22T10:59:59Z",
        "2026-11-22T11:00:00Z",
        "2026-11-22T12:30:00+01:00",  # 11:30 UTC
        "2026-11-22T12:59:59.999999Z",
        "2026-11-19T00:00:00Z",  # more than 2 days old: the ingestion hour
        "not a time",
        5,
        None,
        ["2026-11-22T10:00:00Z"],
    ]
)
# Numbers whose sums are exact in any order, and values that are no number.
counter_values = st.one_of(
    st.integers(-1000, 1000).map(lambda n: n / 2),
    st.integers(-1000, 1000),
    st.sampled_from(["12.5", "-3", "x", "", True, None, [1.5]]),
)
FIELDS = {
    RecordKind.CUSTOM: {"Computer": names},
    RecordKind.PERF: {
        "Computer": names,
        "ObjectName": names,
        "CounterName": names,
        "InstanceName": names,
        "CounterValue": counter_values,
    },
    RecordKind.EVENT: {
        "Computer": names,
        "EventID": st.one_of(names, st.sampled_from(["4624", " 7", "-2"])),
        "EventLevelName": names,
        "Level": names,
        "EventLevel": names,
    },
    RecordKind.SYSLOG: {"Computer": names, "Facility": names, "SeverityLevel": names},
}
LOG_TYPES = {
    RecordKind.CUSTOM: "MyApp_CL",
    RecordKind.PERF: "Perf",
    RecordKind.EVENT: "SecurityEvent",
    RecordKind.SYSLOG: "Syslog",
}


def records_of(kind: RecordKind) -> st.SearchStrategy[list[dict[str, Any]]]:
    record = st.fixed_dictionaries(
        {}, optional={**FIELDS[kind], TIME_FIELD: times, "Message": st.text(max_size=8)}
    )
    return st.lists(record, max_size=60)


def number_as_json(value: Any) -> Any:
    """An integral float as the int it equals (JSON does not tell 4 from 4.0); anything else as is."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def name(value: Any) -> str:
    return key_text(number_as_json(value))


def hour_of(record: dict[str, Any], *, time_field: str | None) -> datetime:
    moment = time_generated(record.get(time_field), received_at=RECEIVED) if time_field else RECEIVED
    return moment.replace(minute=0, second=0, microsecond=0)


def reference(records: list[dict[str, Any]], *, log_type: str, time_field: str | None) -> Aggregates:
    kind = kind_of(log_type)
    usage: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    perf: dict[tuple[Any, ...], list[float]] = {}
    events: dict[tuple[Any, ...], int] = defaultdict(int)
    syslog: dict[tuple[Any, ...], int] = defaultdict(int)
    for record in records:
        hour = hour_of(record, time_field=time_field)
        computer = name(record.get("Computer"))
        usage[hour, computer][0] += 1
        usage[hour, computer][1] += len(orjson.dumps(record))
        if kind is RecordKind.PERF:
            value = counter_value_of(record.get("CounterValue"))
            if value is not None:
                counter = (
                    hour,
                    computer,
                    *(name(record.get(f)) for f in ("ObjectName", "CounterName", "InstanceName")),
                )
                stats = perf.setdefault(counter, [0, 0.0, value, value])
                stats[0] += 1
                stats[1] += value
                stats[2] = min(stats[2], value)
                stats[3] = max(stats[3], value)
        elif kind is RecordKind.EVENT:
            event_id = event_id_of(number_as_json(record.get("EventID")))
            if event_id is not None:
                levels = (record.get(f) for f in ("EventLevelName", "Level", "EventLevel"))
                level = next((level for level in levels if level is not None), None)
                events[hour, computer, event_id, name(level)] += 1
        elif kind is RecordKind.SYSLOG:
            syslog[hour, computer, name(record.get("Facility")), name(record.get("SeverityLevel"))] += 1
    return sorted_aggregates(
        Aggregates(
            usage=[UsageRow(h, log_type, c, n, b) for (h, c), (n, b) in usage.items()],
            perf=[PerfRow(*key, int(s[0]), s[1], s[2], s[3]) for key, s in perf.items()],
            events=[EventRow(h, log_type, c, e, lv, n) for (h, c, e, lv), n in events.items()],
            syslog=[SyslogRow(*key, n) for key, n in syslog.items()],
        )
    )


def aggregated(
    records: list[dict[str, Any]], *, log_type: str, time_field: str | None, window_bytes: int
) -> Aggregates:
    aggregator = HourlyAggregator(log_type=log_type, time_field=time_field, received_at=RECEIVED)
    stream = RecordStream(
        gzip.compress(orjson.dumps(records)),
        record_type=aggregator.record_type,
        max_bytes=MAX_BODY_BYTES,
        window_bytes=window_bytes,
    )
    for window in stream:
        aggregator.add(window)
    return sorted_aggregates(aggregator.result())


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(list(RecordKind)),
    time_field=st.sampled_from([TIME_FIELD, None]),
    window_bytes=st.sampled_from([16, 200, 1024 * 1024]),
)
def test_given_any_records_of_a_kind_when_aggregated_in_windows_then_the_reference_s_rows(
    data: st.DataObject, kind: RecordKind, time_field: str | None, window_bytes: int
) -> None:
    # Given records of the kind, in any order
    records = data.draw(records_of(kind))
    log_type = LOG_TYPES[kind]

    # When aggregated window by window, then the rows are the reference's
    expected = reference(records, log_type=log_type, time_field=time_field)
    assert (
        aggregated(records, log_type=log_type, time_field=time_field, window_bytes=window_bytes) == expected
    )


def test_given_true_before_1_as_event_ids_then_the_1s_still_count_and_true_does_not() -> None:
    # Given an event whose EventID is true, then events with EventID 1 and 1.0 (True == 1 in Python)
    records = [{"Computer": "dc-1", "EventID": eid, "Level": 4} for eid in (True, 1, 1.0, 1)]

    # When aggregated, then the three 1s count as event 1 and the true counts as no event
    result = aggregated(records, log_type="SecurityEvent", time_field=None, window_bytes=1024)
    assert [(row.event_id, row.level, row.events) for row in result.events] == [(1, "4", 3)]
    assert [row.records for row in result.usage] == [4]
