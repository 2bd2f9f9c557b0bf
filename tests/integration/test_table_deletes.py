"""LazyTable.delete_matching on Azurite: what matches goes in transactions of up to 100 entities, what
does not match stays, and an entity an overlapping run deleted first neither fails the delete nor
keeps the rest of its transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.azure_storage import TABLE_TRANSACTION_LIMIT, LazyTable

pytestmark = pytest.mark.integration

EXPIRED = 250  # three transactions: 100, 100 and 50
KEPT = 30


@pytest.fixture
def service(azurite_connection_string: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite_connection_string)


@pytest.fixture
def table(service: TableServiceClient) -> LazyTable:
    return LazyTable(service, f"deletes{uuid.uuid4().hex[:12]}")


def seed(table: LazyTable, partition: str) -> None:
    """EXPIRED entities with expires_at 1 and KEPT with 3, interleaved in RowKey order."""
    table.ensure()
    for index in range(EXPIRED + KEPT):
        expires_at = 3 if index % 9 == 0 and index // 9 < KEPT else 1
        table.client.create_entity(
            {"PartitionKey": partition, "RowKey": f"{index:05d}", "expires_at": expires_at}
        )


def row_keys(table: LazyTable, partition: str) -> list[str]:
    entities = table.client.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
    return [entity["RowKey"] for entity in entities]


def expired(table: LazyTable, partition: str) -> int:
    return table.delete_matching(partition, where="expires_at lt @now", parameters={"now": 2}, what="purging")


def test_given_more_matches_than_one_transaction_takes_then_all_go_and_the_rest_and_other_partitions_stay(
    table: LazyTable,
) -> None:
    # Given expired and kept entities in two partitions
    seed(table, "a")
    seed(table, "b")
    assert EXPIRED > 2 * TABLE_TRANSACTION_LIMIT

    # When partition a's expired ones are deleted
    deleted = expired(table, "a")

    # Then exactly those went
    assert deleted == EXPIRED
    assert len(row_keys(table, "a")) == KEPT
    assert table.count_matching("a", where="expires_at lt @now", parameters={"now": 2}, what="counting") == 0
    assert len(row_keys(table, "b")) == EXPIRED + KEPT


def test_given_an_entity_deleted_by_an_overlapping_run_after_listing_then_its_transaction_still_completes(
    table: LazyTable, service: TableServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given expired entities, and another run that deletes the second one listed just after it is listed
    seed(table, "a")
    other_run = service.get_table_client(table.name)
    listed = LazyTable._matching_row_keys

    def listing_raced(self: LazyTable, *args: Any) -> Iterator[str]:
        for position, row_key in enumerate(listed(self, *args)):
            if position == 1:
                other_run.delete_entity(partition_key="a", row_key=row_key)
            yield row_key

    monkeypatch.setattr(LazyTable, "_matching_row_keys", listing_raced)

    # When this run deletes them
    deleted = expired(table, "a")

    # Then all the expired ones are gone, the one the other run took counted among them
    assert deleted == EXPIRED
    assert len(row_keys(table, "a")) == KEPT


def test_given_no_table_yet_then_nothing_is_deleted_and_nothing_fails(table: LazyTable) -> None:
    assert expired(table, "a") == 0
