"""The daily cap's counters on Azure Table storage: one entity per workspace and UTC day
(PartitionKey = workspace id, RowKey = the day, `bytes` = accepted JSON bytes, `op_id` = the write that
made this version), changed only by conditional writes: insert when there is none (409 if another
instance inserted first), replace with If-Match on the ETag read (412 if another instance committed
first). Either conflict is answered None, and shared.limits.DailyCap re-reads: the op id it finds
tells whether the conflict was really its own write, committed, whose answer was lost and whose
retry by the SDK then found it."""

from __future__ import annotations

from datetime import date
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableServiceClient, UpdateMode

from shared.azure_storage import LazyTable, translated
from shared.limits import NO_COUNT, DailyCount

DAILY_USAGE_TABLE = "dailyusage"
BYTES = "bytes"
OP_ID = "op_id"

# Every capped post waits for its counter call, holding its workspace's turn (shared.limits): a small
# retry budget and short timeouts instead of the SDK's defaults (10 retries, backoff up to 120 s), so a
# storage brown-out fails posts with a 503 in seconds rather than holding worker threads for minutes.
# A point read or write answers in milliseconds when storage is well. Retried writes are safe: the
# op id lets DailyCap recognise a retry that conflicted with its own commit.
COUNTER_RETRIES = 2
COUNTER_CONNECTION_TIMEOUT_SECONDS = 2
COUNTER_READ_TIMEOUT_SECONDS = 2
# Passed per call: the TableServiceClient, and with it the retry policy, is shared with other adapters.
COUNTER_CALL_OPTIONS: dict[str, Any] = {
    "retry_total": COUNTER_RETRIES,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 1,
    "connection_timeout": COUNTER_CONNECTION_TIMEOUT_SECONDS,
    "read_timeout": COUNTER_READ_TIMEOUT_SECONDS,
}


class TableDailyCounters:
    def __init__(self, service: TableServiceClient, *, table_name: str = DAILY_USAGE_TABLE) -> None:
        self._table = LazyTable(service, table_name)

    def read(self, workspace_id: str, day: date) -> DailyCount:
        with translated("reading a daily ingestion count"):
            try:
                entity = self._table.client.get_entity(
                    partition_key=workspace_id, row_key=day.isoformat(), **COUNTER_CALL_OPTIONS
                )
            except ResourceNotFoundError:  # no counter that day, or no table yet
                return NO_COUNT
        # Counters written before op ids have none.
        return DailyCount(bytes=entity[BYTES].value, etag=entity.metadata["etag"], op_id=entity.get(OP_ID))

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int, op_id: str
    ) -> DailyCount | None:
        entity = {
            "PartitionKey": workspace_id,
            "RowKey": day.isoformat(),
            # Int64 whatever the value, so the property's type never changes as the count grows.
            BYTES: EntityProperty(bytes, EdmType.INT64),
            OP_ID: op_id,
        }
        if expected.etag is None:
            self._table.ensure()
        with translated("writing a daily ingestion count"):
            try:
                written = self._write(entity, etag=expected.etag)
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                return None  # created, changed or removed since `expected`, by someone else or this write
        return DailyCount(bytes=bytes, etag=written["etag"], op_id=op_id)

    def delete_workspace_counters(self, workspace_id: str) -> int:
        return self._table.delete_partition(workspace_id, what="removing a workspace's daily counts")

    def delete_counters_before(self, workspace_id: str, *, before: date) -> int:
        return self._table.delete_matching(
            workspace_id, what="purging old daily counts", **self._days_before(before)
        )

    def count_counters_before(self, workspace_id: str, *, before: date) -> int:
        return self._table.count_matching(
            workspace_id, what="counting old daily counts", **self._days_before(before)
        )

    @staticmethod
    def _days_before(before: date) -> dict[str, Any]:
        """RowKeys are ISO days, so string order is day order: a range within the partition."""
        return {"where": "RowKey lt @before", "parameters": {"before": before.isoformat()}}

    def _write(self, entity: dict[str, Any], *, etag: str | None) -> dict[str, Any]:
        if etag is None:
            return self._table.client.create_entity(entity, **COUNTER_CALL_OPTIONS)
        return self._table.client.update_entity(
            entity,
            mode=UpdateMode.REPLACE,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
            **COUNTER_CALL_OPTIONS,
        )
