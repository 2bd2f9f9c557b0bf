"""Hourly aggregation of raw records (pure). Rows are keyed by workspace by the caller: the workspace
id is never taken from record content.

Four aggregates, each one SQL table: volume (records, and the bytes of their JSON text as received)
per log type and computer; for `Perf`, counter statistics (count, sum, min, max) per computer / object
/ counter / instance; for `Event` and `SecurityEvent`, counts per log type / computer / event id /
level; for `Syslog`, counts per computer / facility / severity. The hour is the record's TimeGenerated
hour (shared.records)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from itertools import repeat
from operator import attrgetter
from typing import Any

import msgspec

from shared.rawreader import RecordWindow
from shared.records import RecordKind, TimeGenerated, kind_of

KEY_MAX_LENGTH = 256
UNKNOWN = ""
_CACHE_LIMIT = 4096  # distinct TimeGenerated values remembered from window to window
_TIME_ATTRIBUTE = "time_generated"
# The fields each kind of record is aggregated by, Computer first; a Perf record's CounterValue besides.
KEY_FIELDS = {
    RecordKind.CUSTOM: ("Computer",),
    RecordKind.PERF: ("Computer", "ObjectName", "CounterName", "InstanceName"),
    RecordKind.EVENT: ("Computer", "EventID", "EventLevelName", "Level", "EventLevel"),
    RecordKind.SYSLOG: ("Computer", "Facility", "SeverityLevel"),
}
COUNTER_VALUE = "CounterValue"


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


def event_id_of(value: Any) -> int | None:
    """An EventID as the events table stores it: a 32-bit int, given as a JSON integer or its digits."""
    if type(value) is int:
        return value if -(2**31) <= value < 2**31 else None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return event_id_of(int(value))
    return None


def counter_value_of(value: Any) -> float | None:
    """A CounterValue as a finite float: a JSON number or its text; true and false are no numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


@lru_cache(maxsize=64)
def record_type(kind: RecordKind, time_field: str | None) -> type[msgspec.Struct]:
    """The msgspec Struct a record of `kind` is read into: the fields it is aggregated by, and the time
    field when the blob names one (under a fixed attribute, as the header's name may be no identifier).
    A field the record lacks reads None. Not tracked by the garbage collector: decoded JSON holds no
    reference cycles."""
    names = KEY_FIELDS[kind] + ((COUNTER_VALUE,) if kind is RecordKind.PERF else ())
    fields: list[tuple[str, Any, Any]] = [(name, Any, None) for name in names]
    rename = {name: name for name in names}
    if time_field is not None and time_field not in names:
        fields.append((_TIME_ATTRIBUTE, Any, None))
        rename[_TIME_ATTRIBUTE] = time_field
    return msgspec.defstruct(f"{kind.capitalize()}Record", fields, rename=rename, gc=False)


class HourlyAggregator:
    """Accumulates a blob's records window by window (a large blob never has to be parsed whole) into
    the four aggregates; memory grows with the number of distinct keys, not with the number of records.

    Records are counted per TimeGenerated hour (a window at once when its records share one, as a
    batch's records mostly do), each in one dict entry keyed by its kind's KEY_FIELDS as the record
    spells them (names repeat, so this is a hit per record; the key is made in C by one attrgetter):
    records, bytes, and for Perf the counter statistics. The four aggregates are projections of those
    entries, made in `result()` once per distinct key, where the names become portable key text
    (key_text) and keys that become equal merge."""

    def __init__(self, *, log_type: str, time_field: str | None, received_at: datetime) -> None:
        self._log_type = log_type
        self._kind = kind_of(log_type)
        self.record_type = record_type(self._kind, time_field)
        fields = KEY_FIELDS[self._kind]
        self._one_name = len(fields) == 1  # then attrgetter gives the name itself, not a tuple
        self._names_of = attrgetter(*fields)
        self._value_of = attrgetter(COUNTER_VALUE) if self._kind is RecordKind.PERF else None
        self._time_of = None
        if time_field is not None:
            self._time_of = attrgetter(time_field if time_field in fields else _TIME_ATTRIBUTE)
        self._rule = TimeGenerated(received_at)
        self._received_hour = self._rule.hour(None)
        self._hour_of: dict[Any, datetime] = {}
        # hour -> names -> [records, bytes, samples, total, minimum, maximum]
        self._totals: dict[datetime, dict[Any, list[Any]]] = {}

    def add(self, window: RecordWindow[Any]) -> None:
        for hour, records, sizes in self._by_hour(window):
            self._count(self._totals.setdefault(hour, {}), records, sizes)

    def _count(self, totals: dict[Any, list[Any]], records: list[Any], sizes: list[int]) -> None:
        # The values may repeat None endlessly: the records' length bounds the zip.
        values = map(self._value_of, records) if self._value_of else repeat(None)
        get = totals.get
        for key, size, value in zip(map(self._names_of, records), sizes, values, strict=False):
            try:
                entry = get(key)
            except TypeError:  # a list or object where a name was expected
                entry = None
            if entry is None:  # a key not seen as spelled: look for it, or add it, as _canonical
                key = _canonical(key)
                entry = get(key)
                if entry is None:
                    entry = totals[key] = [0, 0, 0, 0.0, math.inf, -math.inf]
            entry[0] += 1
            entry[1] += size
            if value.__class__ is not float:  # JSON floats are finite; anything else is converted
                if value is None:
                    continue
                value = counter_value_of(value)
                if value is None:
                    continue  # counted for volume; a sample without a number has no statistics
            entry[2] += 1
            entry[3] += value
            if value < entry[4]:
                entry[4] = value
            if value > entry[5]:
                entry[5] = value

    def _by_hour(self, window: RecordWindow[Any]) -> Iterator[tuple[datetime, list[Any], list[int]]]:
        """The window's records and their sizes, per TimeGenerated hour."""
        records, sizes = window.records, window.sizes
        if self._time_of is None:
            yield self._received_hour, records, sizes
            return
        times = list(map(self._time_of, records))
        try:
            distinct = set(times)
        except TypeError:  # a list or object as the time: not a time
            times = [time if type(time) is str else None for time in times]
            distinct = set(times)
        hour_of = self._hours(distinct)
        hours = {hour_of[time] for time in distinct}
        if len(hours) == 1:
            yield hours.pop(), records, sizes
            return
        positions: dict[datetime, list[int]] = {}
        for position, time in enumerate(times):
            positions.setdefault(hour_of[time], []).append(position)
        for hour, chosen in positions.items():
            yield hour, list(map(records.__getitem__, chosen)), list(map(sizes.__getitem__, chosen))

    def _hours(self, times: set[Any]) -> dict[Any, datetime]:
        """The hour of each of `times`, each parsed once (a batch's records share times); the memory
        is bounded by _CACHE_LIMIT times and one window's."""
        unseen = times.difference(self._hour_of)
        if len(self._hour_of) + len(unseen) > _CACHE_LIMIT:
            self._hour_of = {}
            unseen = times
        for time in unseen:
            self._hour_of[time] = self._rule.hour(time)
        return self._hour_of

    def _entries(self) -> Iterator[tuple[datetime, Any, list[Any]]]:
        for hour, totals in self._totals.items():
            for names, entry in totals.items():
                yield hour, names, entry

    def result(self) -> Aggregates:
        usage: dict[tuple[Any, ...], list[int]] = {}
        perf: dict[tuple[Any, ...], list[float]] = {}
        events: dict[tuple[Any, ...], int] = {}
        syslog: dict[tuple[Any, ...], int] = {}
        kind = self._kind
        for hour, names, (records, size, samples, total, minimum, maximum) in self._entries():
            parts = tuple(map(_spelled, (names,) if self._one_name else names))
            computer = key_text(parts[0])
            volume = usage.setdefault((hour, computer), [0, 0])
            volume[0] += records
            volume[1] += size
            if kind is RecordKind.PERF and samples:
                counter = (hour, computer, *map(key_text, parts[1:]))
                stats = perf.setdefault(counter, [0, 0.0, minimum, maximum])
                stats[0] += samples
                stats[1] += total
                stats[2] = min(stats[2], minimum)
                stats[3] = max(stats[3], maximum)
            elif kind is RecordKind.EVENT:
                event_id = event_id_of(parts[1])
                if event_id is not None:
                    level = next((part for part in parts[2:] if part is not None), None)
                    event = (hour, computer, event_id, key_text(level))
                    events[event] = events.get(event, 0) + records
            elif kind is RecordKind.SYSLOG:
                message = (hour, computer, key_text(parts[1]), key_text(parts[2]))
                syslog[message] = syslog.get(message, 0) + records
        log_type = self._log_type
        return Aggregates(
            usage=[UsageRow(h, log_type, c, n, b) for (h, c), (n, b) in sorted(usage.items())],
            perf=[
                PerfRow(h, c, o, k, i, int(s[0]), float(s[1]), float(s[2]), float(s[3]))
                for (h, c, o, k, i), s in sorted(perf.items())
            ],
            events=[EventRow(h, log_type, c, e, lv, n) for (h, c, e, lv), n in sorted(events.items())],
            syslog=[SyslogRow(h, c, f, sv, n) for (h, c, f, sv), n in sorted(syslog.items())],
        )


def _canonical(key: Any) -> Any:
    """A key as stored: its names (one, or a tuple) as they count. Python's equality is not JSON's:
    True == 1 == 1.0. So that a record's key as spelled finds only the entry of the same JSON names,
    true and false, and the numbers 0 and 1 that equal them, are stored tagged, where no spelled key
    finds them (their records come here each time); an integral float is stored as the int it equals,
    which it finds, as 4.0 and 4 are one JSON number; a list or object is stored as its text."""
    if type(key) is tuple:
        return tuple(map(_canonical_name, key))
    return _canonical_name(key)


def _canonical_name(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    if type(value) is bool:
        return (bool, value)
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int:
        return (int, value) if value in (0, 1) else value
    if type(value) is float:
        return value
    return key_text(value)


def _spelled(name: Any) -> Any:
    """A stored name as its record spelled it (see _canonical)."""
    return name[1] if type(name) is tuple else name
