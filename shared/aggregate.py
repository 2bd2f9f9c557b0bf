"""Hourly aggregation of raw records (pure). Rows are keyed by workspace by the caller: the workspace
id is never taken from record content.

Four aggregates, each one SQL table: volume (records, JSON bytes) per log type and computer; for
`Perf`, counter statistics (count, sum, min, max) per computer / object / counter / instance; for
`Event` and `SecurityEvent`, counts per log type / computer / event id / level; for `Syslog`, counts per
computer / facility / severity. The hour is the record's TimeGenerated hour (shared.records)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.records import RecordKind, kind_of, time_generated

KEY_MAX_LENGTH = 256
UNKNOWN = ""
_CACHE_LIMIT = 4096  # distinct TimeGenerated strings remembered per blob


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Volume of one log type from one computer in one hour: records and their JSON bytes."""

    hour: datetime
    log_type: str
    computer: str
    records: int
    bytes: int


@dataclass(frozen=True, slots=True)
class PerfRow:
    hour: datetime
    computer: str
    object_name: str
    counter_name: str
    instance_name: str
    samples: int
    total: float
    minimum: float
    maximum: float


@dataclass(frozen=True, slots=True)
class EventRow:
    hour: datetime
    log_type: str
    computer: str
    event_id: int
    level: str
    events: int


@dataclass(frozen=True, slots=True)
class SyslogRow:
    hour: datetime
    computer: str
    facility: str
    severity: str
    messages: int


@dataclass(frozen=True, slots=True)
class Aggregates:
    usage: list[UsageRow] = field(default_factory=list)
    perf: list[PerfRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    syslog: list[SyslogRow] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(row.records for row in self.usage)


def key_text(value: Any) -> str:
    """A text key every database stores and compares alike: no control characters (PostgreSQL refuses
    NUL), no trailing blanks (SQL Server ignores them when comparing), at most 256 UTF-16 code units
    (the width of the T-SQL columns)."""
    if value is None:
        return UNKNOWN
    raw = value if isinstance(value, str) else str(value)
    if len(raw) <= KEY_MAX_LENGTH // 2 and raw.isprintable() and not raw.endswith(" "):
        return raw  # the common case: short and clean, even in UTF-16
    text = "".join(c for c in raw if c.isprintable())[:KEY_MAX_LENGTH].rstrip()
    while len(text.encode("utf-16-le")) > 2 * KEY_MAX_LENGTH:
        text = text[:-1].rstrip()
    return text


def _event_id(value: Any) -> int | None:
    if type(value) is int:
        return value if -(2**31) <= value < 2**31 else None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return _event_id(int(value))
    return None


def _counter_value(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class HourlyAggregator:
    """Accumulates records chunk by chunk (a large blob never has to be parsed whole) into the four
    aggregates; memory grows with the number of distinct keys, not with the number of records.

    Keys are gathered as the records spell them (names repeat, so this is a dict hit per record) and
    turned into portable key text (key_text) once per distinct key in `result()`, where keys that
    become equal are merged."""

    def __init__(self, *, log_type: str, time_field: str | None, received_at: datetime) -> None:
        self._log_type = log_type
        self._time_field = time_field
        self._received_at = received_at.astimezone(UTC)
        self._received_hour = self._received_at.replace(minute=0, second=0, microsecond=0)
        self._hours: dict[str, datetime] = {}
        self._detail = {
            RecordKind.PERF: self._add_perf,
            RecordKind.EVENT: self._add_event,
            RecordKind.SYSLOG: self._add_syslog,
        }.get(kind_of(log_type))
        self._usage: dict[tuple[Any, ...], list[int]] = {}
        self._perf: dict[tuple[Any, ...], list[float]] = {}
        self._events: dict[tuple[Any, ...], int] = {}
        self._syslog: dict[tuple[Any, ...], int] = {}

    def _hour(self, record: Mapping[str, Any]) -> datetime:
        value = record.get(self._time_field) if self._time_field is not None else None
        if type(value) is not str:
            return self._received_hour
        hour = self._hours.get(value)  # times repeat (a batch spans seconds): parse each one once
        if hour is None:
            moment = time_generated(record, field=self._time_field, received_at=self._received_at)
            hour = moment.replace(minute=0, second=0, microsecond=0)
            if len(self._hours) < _CACHE_LIMIT:
                self._hours[value] = hour
        return hour

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        dumps, usage, detail = orjson.dumps, self._usage, self._detail
        timed = self._time_field is not None
        hour = self._received_hour
        for record in records:
            if timed:
                hour = self._hour(record)
            computer = record.get("Computer")
            key = (hour, computer)
            try:
                totals = usage.get(key)
            except TypeError:  # a list or object where a name was expected: use its text
                computer = key_text(computer)
                key = (hour, computer)
                totals = usage.get(key)
            if totals is None:
                totals = usage[key] = [0, 0]
            totals[0] += 1
            totals[1] += len(dumps(record))
            if detail is not None:
                detail(record, hour, computer)

    def _add_perf(self, record: Mapping[str, Any], hour: datetime, computer: Any) -> None:
        value = record.get("CounterValue")
        if type(value) is not float and type(value) is not int:
            value = _counter_value(value)
            if value is None:
                return  # counted for volume; a sample without a number has no statistics
        elif not math.isfinite(value):
            return
        counter = _hashable(
            (hour, computer, record.get("ObjectName"), record.get("CounterName"), record.get("InstanceName"))
        )
        stats = self._perf.get(counter)
        if stats is None:
            self._perf[counter] = [1, value, value, value]
            return
        stats[0] += 1
        stats[1] += value
        if value < stats[2]:
            stats[2] = value
        elif value > stats[3]:
            stats[3] = value

    def _add_event(self, record: Mapping[str, Any], hour: datetime, computer: Any) -> None:
        event_id = _event_id(record.get("EventID"))
        if event_id is None:
            return
        level = record.get("EventLevelName", record.get("Level", record.get("EventLevel")))
        key = _hashable((hour, computer, event_id, level))
        self._events[key] = self._events.get(key, 0) + 1

    def _add_syslog(self, record: Mapping[str, Any], hour: datetime, computer: Any) -> None:
        key = _hashable((hour, computer, record.get("Facility"), record.get("SeverityLevel")))
        self._syslog[key] = self._syslog.get(key, 0) + 1

    def result(self) -> Aggregates:
        log_type = self._log_type
        usage: dict[tuple[Any, ...], list[int]] = {}
        for raw, (records, size) in self._usage.items():
            totals = usage.setdefault(_portable(raw), [0, 0])
            totals[0] += records
            totals[1] += size
        perf: dict[tuple[Any, ...], list[float]] = {}
        for raw, (samples, total, minimum, maximum) in self._perf.items():
            stats = perf.setdefault(_portable(raw), [0, 0.0, minimum, maximum])
            stats[0] += samples
            stats[1] += total
            stats[2] = min(stats[2], minimum)
            stats[3] = max(stats[3], maximum)
        return Aggregates(
            usage=[UsageRow(h, log_type, c, n, b) for (h, c), (n, b) in sorted(usage.items())],
            perf=[
                PerfRow(h, c, o, k, i, int(s[0]), s[1], s[2], s[3])
                for (h, c, o, k, i), s in sorted(perf.items())
            ],
            events=[
                EventRow(h, log_type, c, e, lv, n)
                for (h, c, e, lv), n in sorted(_summed(self._events, kept=(0, 2)).items())
            ],
            syslog=[SyslogRow(h, c, f, sv, n) for (h, c, f, sv), n in sorted(_summed(self._syslog).items())],
        )


def _hashable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key as spelled, or with its unhashable parts (lists, objects) replaced by their text."""
    try:
        hash(key)
    except TypeError:
        return tuple(
            part if isinstance(part, str | int | float | datetime | None) else key_text(part) for part in key
        )
    return key


def _portable(raw: tuple[Any, ...], *, kept: tuple[int, ...] = (0,)) -> tuple[Any, ...]:
    """The parts at `kept` (the hour, an event id) stay; every name becomes its portable key text."""
    return tuple(part if index in kept else key_text(part) for index, part in enumerate(raw))


def _summed(
    counts: dict[tuple[Any, ...], int], *, kept: tuple[int, ...] = (0,)
) -> dict[tuple[Any, ...], int]:
    merged: dict[tuple[Any, ...], int] = {}
    for raw, count in counts.items():
        key = _portable(raw, kept=kept)
        merged[key] = merged.get(key, 0) + count
    return merged
