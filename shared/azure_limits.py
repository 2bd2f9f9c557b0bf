"""The daily cap's counters on Azure Table storage: one entity per workspace and UTC day
(PartitionKey = workspace id, RowKey = the day, `bytes` = accepted JSON bytes), changed only by
conditional writes: insert when there is none (409 if another instance inserted first), replace with
If-Match on the ETag read (412 if another instance committed first). Either conflict is answered None,
and shared.limits.DailyCap re-reads and tries again."""

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


class TableDailyCounters:
    def __init__(self, service: TableServiceClient, *, table_name: str = DAILY_USAGE_TABLE) -> None:
        self._table = LazyTable(service, table_name)

    def read(self, workspace_id: str, day: date) -> DailyCount:
        with translated("reading a daily ingestion count"):
            try:
                entity = self._table.client.get_entity(partition_key=workspace_id, row_key=day.isoformat())
            except ResourceNotFoundError:  # no counter that day, or no table yet
                return NO_COUNT
        return DailyCount(bytes=entity[BYTES].value, etag=entity.metadata["etag"])

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int
    ) -> DailyCount | None:
        entity = {
            "PartitionKey": workspace_id,
            "RowKey": day.isoformat(),
            # Int64 whatever the value, so the property's type never changes as the count grows.
            BYTES: EntityProperty(bytes, EdmType.INT64),
        }
        if expected.etag is None:
            self._table.ensure()
        with translated("writing a daily ingestion count"):
            try:
                written = self._write(entity, etag=expected.etag)
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                return None  # created, changed or removed by someone else since `expected`
        return DailyCount(bytes=bytes, etag=written["etag"])

    def delete_workspace_counters(self, workspace_id: str) -> int:
        return self._table.delete_partition(workspace_id, what="removing a workspace's daily counts")

    def _write(self, entity: dict[str, Any], *, etag: str | None) -> dict[str, Any]:
        if etag is None:
            return self._table.client.create_entity(entity)
        return self._table.client.update_entity(
            entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
        )
