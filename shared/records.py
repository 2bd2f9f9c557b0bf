"""What a raw record is and when it happened (pure).

The seeds' data sources are recognised by log type (the Data Collector API's Log-Type, or the Logs
Ingestion stream's table): performance counters (`Perf`), Windows and security events (`Event`,
`SecurityEvent`) and `Syslog`; anything else is a custom log, counted for volume only.

TimeGenerated follows Azure's rule for the Data Collector API: the field named by
`time-generated-field` when the record has it as an ISO 8601 time, unless that time is more than 2
days before ingestion or more than 1 day after it; then, and without the header, the ingestion time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

MAX_PAST = timedelta(days=2)
MAX_FUTURE = timedelta(days=1)


class RecordKind(StrEnum):
    CUSTOM = "custom"
    PERF = "perf"
    EVENT = "event"
    SYSLOG = "syslog"


_KINDS = {
    "Perf": RecordKind.PERF,
    "Event": RecordKind.EVENT,
    "SecurityEvent": RecordKind.EVENT,
    "Syslog": RecordKind.SYSLOG,
}


def kind_of(log_type: str) -> RecordKind:
    return _KINDS.get(log_type, RecordKind.CUSTOM)


class TimeGenerated:
    """Azure's rule for records received at one moment, `received_at` (kept in UTC): the bounds are
    computed once, as a blob's records are many and share them."""

    def __init__(self, received_at: datetime) -> None:
        self.received_at = received_at.astimezone(UTC)
        self._earliest = received_at - MAX_PAST
        self._latest = received_at + MAX_FUTURE

    def moment(self, value: object) -> datetime:
        """The moment a record's time field `value` names; `received_at` when it names none."""
        if not isinstance(value, str):
            return self.received_at
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return self.received_at
        zone = moment.tzinfo
        if zone is not UTC:
            moment = moment.replace(tzinfo=UTC) if zone is None else moment.astimezone(UTC)
        if moment < self._earliest or moment > self._latest:
            return self.received_at
        return moment

    def hour(self, value: object) -> datetime:
        """The UTC hour of `moment(value)`. (The constructor with positional arguments: several times
        cheaper than `replace(minute=0, ...)`, which matters once per distinct time of a blob.)"""
        moment = self.moment(value)
        return datetime(moment.year, moment.month, moment.day, moment.hour, 0, 0, 0, UTC)


def time_generated(value: object, *, received_at: datetime) -> datetime:
    """The moment a record's time field `value` names, by Azure's rule; `received_at` when it names none."""
    return TimeGenerated(received_at).moment(value)
