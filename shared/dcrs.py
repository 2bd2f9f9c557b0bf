"""Data collection rules (DCRs) of the Logs Ingestion API: which workspace a rule's streams go to, and
which principals may send to it (what Azure expresses as the Monitoring Metrics Publisher role on the
rule). The registry is the Azure Table `dcrs`, one entity per rule, PartitionKey = immutable id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient

from shared.azure_storage import LazyTable, translated
from shared.cache import TtlCache
from shared.errors import BadRequest, DataCollectionRuleNotFound, InvalidLogType, InvalidStream
from shared.ids import parse_log_type
from shared.tokens import parse_principal
from shared.workspaces import Workspace

DCRS_TABLE = "dcrs"
DCR_ROW_KEY = "dcr"
IMMUTABLE_ID_PREFIX = "dcr-"
STREAM_PREFIX = "Custom-"
CUSTOM_TABLE_SUFFIX = "_CL"
_IMMUTABLE_ID = re.compile(r"dcr-[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class DataCollectionRule:
    immutable_id: str
    workspace_id: str
    streams: tuple[str, ...]
    principals: tuple[str, ...]  # canonical GUIDs
    created_at: datetime

    def grants(self, principal: str) -> bool:
        return principal in self.principals


class DcrRegistry(Protocol):
    def get_rule(self, immutable_id: str) -> DataCollectionRule:
        """Raises DataCollectionRuleNotFound."""

    def list_rules(self, workspace_id: str) -> list[DataCollectionRule]: ...

    def create_rule(self, rule: DataCollectionRule) -> None: ...


class WorkspaceLookup(Protocol):
    def get_workspace(self, workspace_id: str) -> Workspace:
        """Raises WorkspaceNotFound."""


def new_immutable_id() -> str:
    return IMMUTABLE_ID_PREFIX + uuid.uuid4().hex


def is_immutable_id(value: str) -> bool:
    """`dcr-` + 32 lower-case hex, as Azure shapes them; anything else names no rule (and never
    reaches a table key)."""
    return _IMMUTABLE_ID.fullmatch(value) is not None


def log_type_of_stream(stream: str) -> str:
    """`Custom-<Table>_CL` → `<Table>_CL`, the log type raw blobs and aggregates carry."""
    table = stream.removeprefix(STREAM_PREFIX)
    if table != stream and table.endswith(CUSTOM_TABLE_SUFFIX) and table != CUSTOM_TABLE_SUFFIX:
        try:
            return parse_log_type(table)
        except InvalidLogType:
            pass
    raise InvalidStream(
        "The stream must be 'Custom-<Table>_CL', the table name of ASCII letters, digits and underscore, "
        "at most 100 characters."
    )


def create_rule(
    *,
    rules: DcrRegistry,
    workspaces: WorkspaceLookup,
    workspace_id: str,
    streams: Iterable[str],
    principals: Iterable[str],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DataCollectionRule:
    """A new rule for an existing workspace; raises WorkspaceNotFound, InvalidStream, BadRequest."""
    workspace = workspaces.get_workspace(workspace_id)
    stream_names = tuple(dict.fromkeys(streams))
    for stream in stream_names:
        log_type_of_stream(stream)
    granted = []
    for principal in principals:
        canonical = parse_principal(principal)
        if canonical is None:
            raise BadRequest(
                f"Principal {principal[:100]!r} is not an Entra object or application id (GUID)."
            )
        granted.append(canonical)
    if not stream_names or not granted:
        raise BadRequest("A data collection rule needs at least one stream and one principal.")
    rule = DataCollectionRule(
        immutable_id=new_immutable_id(),
        workspace_id=workspace.workspace_id,
        streams=stream_names,
        principals=tuple(dict.fromkeys(granted)),
        created_at=now(),
    )
    rules.create_rule(rule)
    return rule


class RuleDirectory:
    """The registry as ingest asks it, cached for a short TTL like WorkspaceDirectory: a grant change
    is honoured within the TTL, and made-up ids cost one table read per id and TTL."""

    def __init__(self, *, rules: DcrRegistry, cache_ttl_seconds: float) -> None:
        self._rules = rules
        self._cache: TtlCache[str, DataCollectionRule | None] = TtlCache(ttl_seconds=cache_ttl_seconds)

    def get_rule(self, immutable_id: str) -> DataCollectionRule:
        rule = self._cache.get_or_load(immutable_id, self._find_rule)
        if rule is None:
            raise DataCollectionRuleNotFound(f"Data collection rule {immutable_id} does not exist.")
        return rule

    def _find_rule(self, immutable_id: str) -> DataCollectionRule | None:
        try:
            return self._rules.get_rule(immutable_id)
        except DataCollectionRuleNotFound:
            return None


class TableDcrRegistry:
    """PartitionKey = immutable id, so the lookup on every request is a point read. Streams and
    principals are JSON arrays (Table properties have no list type)."""

    def __init__(self, service: TableServiceClient, *, table_name: str = DCRS_TABLE) -> None:
        self._table = LazyTable(service, table_name)

    def get_rule(self, immutable_id: str) -> DataCollectionRule:
        with translated("reading the data collection rules"):
            try:
                entity = self._table.client.get_entity(partition_key=immutable_id, row_key=DCR_ROW_KEY)
            except ResourceNotFoundError:
                raise DataCollectionRuleNotFound(
                    f"Data collection rule {immutable_id} does not exist."
                ) from None
        return _rule(entity)

    def list_rules(self, workspace_id: str) -> list[DataCollectionRule]:
        with translated("listing the data collection rules"):
            try:
                entities = list(
                    self._table.client.query_entities("workspace_id eq @ws", parameters={"ws": workspace_id})
                )
            except ResourceNotFoundError:
                return []
        return sorted(map(_rule, entities), key=lambda r: r.created_at)

    def delete_workspace_rules(self, workspace_id: str) -> int:
        """For the removal of a workspace; one already gone is success. Finding its rules scans the
        whole table (workspace_id is a property, not a key): fine for the daily retention run, the table
        holding a few rules per workspace."""
        rules = self.list_rules(workspace_id)
        with translated("removing a workspace's data collection rules"):
            for rule in rules:
                self._table.client.delete_entity(partition_key=rule.immutable_id, row_key=DCR_ROW_KEY)
        return len(rules)

    def create_rule(self, rule: DataCollectionRule) -> None:
        self._table.create(
            {
                "PartitionKey": rule.immutable_id,
                "RowKey": DCR_ROW_KEY,
                "workspace_id": rule.workspace_id,
                "streams": orjson.dumps(list(rule.streams)).decode(),
                "principals": orjson.dumps(list(rule.principals)).decode(),
                "created_at": rule.created_at,
            },
            what="registering a data collection rule",
        )


def _rule(entity: Any) -> DataCollectionRule:
    return DataCollectionRule(
        immutable_id=entity["PartitionKey"],
        workspace_id=entity["workspace_id"],
        streams=tuple(orjson.loads(entity["streams"])),
        principals=tuple(orjson.loads(entity["principals"])),
        created_at=entity["created_at"],
    )
