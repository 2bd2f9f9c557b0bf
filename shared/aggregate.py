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
    """The record's Computer as a key every database stores and compares alike: no control characters
    (PostgreSQL refuses NUL), no trailing blanks (SQL Server ignores them when comparing), at most
    256 UTF-16 code units (the width of the T-SQL column)."""
    value = record.get("Computer")
    if value is None:
        return UNKNOWN_COMPUTER
    text = "".join(
        c for c in (value if isinstance(value, str) else str(value)) if c.isprintable() or c == " "
    )
    text = text[:COMPUTER_MAX_LENGTH].rstrip()
    while len(text.encode("utf-16-le")) > 2 * COMPUTER_MAX_LENGTH:
        text = text[:-1].rstrip()
    return text


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
