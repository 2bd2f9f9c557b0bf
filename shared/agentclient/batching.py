"""Records and batches (pure): a log line becomes a record, records become JSON-array batches of at
most a given size, ready to be gzip'ed into the spool.

A line that is a JSON object passes through as that object. Any other non-empty line becomes
`{"Message": line, "Computer": host, "TimeGenerated": when it was read}`; the agent posts every batch
with `time-generated-field: TimeGenerated`, so a batch delivered hours late still counts in the hour
its lines were read."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson

from shared.agentclient.errors import InvalidRecords
from shared.rawstore import MAX_BODY_BYTES

TIME_GENERATED_FIELD = "TimeGenerated"

Mark = TypeVar("Mark")

log = logging.getLogger("sluice.agent.batching")


def record_from_line(line: str, *, computer: str, now: datetime) -> dict[str, Any] | None:
    """The record a line of text stands for; None for an empty line."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if text.lstrip().startswith("{"):
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            document = None
        if isinstance(document, dict):
            return document
    return {"Message": text, "Computer": computer, TIME_GENERATED_FIELD: now.astimezone(UTC).isoformat()}


def records_from_json(data: bytes) -> list[dict[str, Any]]:
    """One JSON document: an object, or an array of objects, as the Data Collector API takes them."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise InvalidRecords(f"the input is not JSON: {error}") from None
    records = [document] if isinstance(document, dict) else document
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidRecords("the input must be a JSON object or an array of objects")
    return records


@dataclass(frozen=True, slots=True)
class Batch(Generic[Mark]):
    json: bytes  # a JSON array
    records: int
    mark: Mark  # the caller's mark of the last record in it (a tail: the file position after it)


class BatchBuilder(Generic[Mark]):
    """Collects records until the next one would take the batch over `max_bytes` of JSON. A record
    larger than that on its own makes a batch of its own; one over the service's limit for a whole
    post (30 MB) is dropped with a log line, since it could never be accepted."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._records: list[tuple[bytes, Mark]] = []  # each record's JSON and its mark
        self._size = 0

    @property
    def pending(self) -> int:
        return len(self._records)

    def add(self, record: dict[str, Any], mark: Mark) -> Iterator[Batch[Mark]]:
        """Yields the batch this record closed, if any."""
        encoded = orjson.dumps(record)
        if len(encoded) + 2 > MAX_BODY_BYTES:
            log.warning("dropped a record of %d bytes: over the service's limit for one post", len(encoded))
            return
        # A JSON array of n records takes their bytes plus n - 1 commas and two brackets.
        if self._records and self._size + len(encoded) + len(self._records) + 2 > self._max_bytes:
            yield from self.flush()
        self._records.append((encoded, mark))
        self._size += len(encoded)

    def flush(self) -> Iterator[Batch[Mark]]:
        """Yields what is collected, as one batch (nothing when nothing is)."""
        if not self._records:
            return
        records, self._records, self._size = self._records, [], 0
        yield Batch(
            json=b"[" + b",".join(encoded for encoded, _ in records) + b"]",
            records=len(records),
            mark=records[-1][1],
        )


def batches(records: Iterable[dict[str, Any]], *, max_bytes: int) -> Iterator[Batch[None]]:
    """Every batch of `records`, in order."""
    builder: BatchBuilder[None] = BatchBuilder(max_bytes)
    for record in records:
        yield from builder.add(record, None)
    yield from builder.flush()
