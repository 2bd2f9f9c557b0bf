"""What a workspace was sent against what it stored (pure): the acknowledged records by id, the raw
blobs read back from storage, and what the aggregates must therefore count, duplicates included."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tests.support.agent_client import RawBatch
from tests.support.load_agents import AgentOutcome, RecordId


@dataclass(frozen=True)
class Reconciliation:
    workspace_id: str
    acknowledged_records: int
    acknowledged_bytes: int
    stored_blobs: int
    duplicate_blobs: int  # the same gzip bytes (sha256 metadata) stored more than once
    stored_records: int  # every record of every blob, duplicates included: what the aggregates count
    stored_bytes: int
    stored_by_log_type: dict[str, int]
    lost: int  # acknowledged, and in no blob
    unacknowledged_stored: int  # in a blob, and never acknowledged (nor sent)


def reconcile(
    workspace_id: str, outcomes: Iterable[AgentOutcome], batches_by_log_type: dict[str, list[RawBatch]]
) -> Reconciliation:
    acknowledged: dict[RecordId, int] = {}
    for outcome in outcomes:
        if outcome.workspace_id == workspace_id:
            acknowledged |= outcome.acknowledged
    stored: Counter[RecordId] = Counter()
    stored_by_log_type: Counter[str] = Counter()
    blobs = [batch for batches in batches_by_log_type.values() for batch in batches]
    for log_type, batches in batches_by_log_type.items():
        for batch in batches:
            stored.update((record["Agent"], record["Seq"]) for record in batch.records)
            stored_by_log_type[log_type] += len(batch.records)
    return Reconciliation(
        workspace_id=workspace_id,
        acknowledged_records=len(acknowledged),
        acknowledged_bytes=sum(acknowledged.values()),
        stored_blobs=len(blobs),
        duplicate_blobs=len(blobs) - len({batch.sha256 for batch in blobs}),
        stored_records=stored.total(),
        stored_bytes=sum(acknowledged.get(record_id, 0) * times for record_id, times in stored.items()),
        stored_by_log_type=dict(stored_by_log_type),
        lost=len(acknowledged.keys() - stored.keys()),
        unacknowledged_stored=len(stored.keys() - acknowledged.keys()),
    )
