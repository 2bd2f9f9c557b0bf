"""TableDcrRegistry against Azurite: point reads by immutable id, listing and deleting by workspace, and the
streams and principals surviving the round trip through Table properties."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient

from shared.dcrs import DataCollectionRule, TableDcrRegistry, new_immutable_id
from shared.errors import Conflict, DataCollectionRuleNotFound

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(azurite_connection_string: str) -> TableDcrRegistry:
    """A table of its own per test (names: letters and digits only)."""
    service = TableServiceClient.from_connection_string(azurite_connection_string)
    return TableDcrRegistry(service, table_name=f"dcrs{uuid.uuid4().hex[:12]}")


def new_rule(workspace_id: str, *, streams: tuple[str, ...] = ("Custom-App_CL",)) -> DataCollectionRule:
    return DataCollectionRule(
        immutable_id=new_immutable_id(),
        workspace_id=workspace_id,
        streams=streams,
        principals=(str(uuid.uuid4()), str(uuid.uuid4())),
        created_at=datetime.now(UTC),
    )


def test_given_a_rule_when_read_back_then_every_field_survives(registry: TableDcrRegistry) -> None:
    rule = new_rule(str(uuid.uuid4()), streams=("Custom-App_CL", "Custom-Audit_CL"))

    registry.create_rule(rule)

    assert registry.get_rule(rule.immutable_id) == rule


def test_given_no_table_yet_then_reads_see_no_rules(registry: TableDcrRegistry) -> None:
    with pytest.raises(DataCollectionRuleNotFound):
        registry.get_rule(new_immutable_id())
    assert registry.list_rules(str(uuid.uuid4())) == []


def test_given_rules_of_two_workspaces_then_listing_one_shows_only_its_own_oldest_first(
    registry: TableDcrRegistry,
) -> None:
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    first, second, other = new_rule(mine), new_rule(mine), new_rule(theirs)
    for rule in (second, other, first):
        registry.create_rule(rule)

    assert registry.list_rules(mine) == sorted([first, second], key=lambda r: r.created_at)


def test_given_an_existing_immutable_id_then_creating_it_again_is_a_conflict(
    registry: TableDcrRegistry,
) -> None:
    rule = new_rule(str(uuid.uuid4()))
    registry.create_rule(rule)

    with pytest.raises(Conflict):
        registry.create_rule(rule)


def test_given_rules_of_two_workspaces_when_deleting_one_s_then_only_its_rules_go_and_again_deletes_none(
    registry: TableDcrRegistry,
) -> None:
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    doomed, other = [new_rule(mine), new_rule(mine)], new_rule(theirs)
    for rule in (*doomed, other):
        registry.create_rule(rule)

    first = registry.delete_workspace_rules(mine)
    again = registry.delete_workspace_rules(mine)

    assert (first, again) == (2, 0)
    assert registry.list_rules(mine) == []
    for rule in doomed:
        with pytest.raises(DataCollectionRuleNotFound):
            registry.get_rule(rule.immutable_id)
    assert registry.get_rule(other.immutable_id) == other


def test_given_no_table_yet_when_deleting_a_workspace_s_rules_then_none(registry: TableDcrRegistry) -> None:
    assert registry.delete_workspace_rules(str(uuid.uuid4())) == 0
