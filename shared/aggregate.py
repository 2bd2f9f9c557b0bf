"""Hourly aggregation of raw records (pure). Rows are keyed by workspace by the caller: the
workspace id is never taken from record content."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

COMPUTER_MAX_LENGTH = 256
UNKNOWN_COMPUTER = ""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Volume of one log type from one computer in one hour: records and their JSON bytes."""

    hour: datetime
    log_type: str
    computer: str
    records: int
    bytes: int


def computer_of(record: Mapping[str, Any]) -> str:
    value = record.get("Computer")
    if value is None:
        return UNKNOWN_COMPUTER
    return (value if isinstance(value, str) else str(value))[:COMPUTER_MAX_LENGTH]


def hourly_volume(records: Iterable[Mapping[str, Any]], *, hour: datetime, log_type: str) -> list[UsageRow]:
    totals: dict[str, list[int]] = {}
    for record in records:
        counts = totals.setdefault(computer_of(record), [0, 0])
        counts[0] += 1
        counts[1] += len(orjson.dumps(record))
    return [
        UsageRow(hour=hour, log_type=log_type, computer=computer, records=n, bytes=size)
        for computer, (n, size) in sorted(totals.items())
    ]
