"""The audit log on Azure Table storage: table `audit`, one partition per chain (workspace id or
`system`), RowKey = the zero-padded sequence number so entries list in order, and a `head` entity per
partition. An entry and its head move in one entity-group transaction (atomic within a partition),
the head conditional on its ETag: two writers built on the same head cannot both succeed.

No purge may touch this table: audit entries outlive retention and workspace deletion."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode

from shared.audit import AuditChain, AuditEntry, AuditHead, log_name, workspace_of_log
from shared.azure_storage import LazyTable, translated

AUDIT_TABLE = "audit"
HEAD_ROW_KEY = "head"  # sorts after every digit, so after all entries
SEQUENCE_DIGITS = 16
# The transaction lost the race: 409 the entry's RowKey exists, 412 the head's ETag moved on.
LOST_RACE_STATUSES = (409, 412)

T = TypeVar("T")
_Operation = tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], dict[str, Any]]


def row_key(sequence: int) -> str:
    return f"{sequence:0{SEQUENCE_DIGITS}d}"


class TableAuditStore:
    def __init__(self, service: TableServiceClient, *, table_name: str = AUDIT_TABLE) -> None:
        self._table = LazyTable(service, table_name)

    def head(self, workspace_id: str | None) -> AuditHead | None:
        with translated("reading the audit log head"):
            try:
                entity = self._table.client.get_entity(
                    partition_key=log_name(workspace_id), row_key=HEAD_ROW_KEY
                )
            except ResourceNotFoundError:
                return None
        return _head(entity)

    def try_append(self, entry: AuditEntry, *, after: AuditHead | None) -> bool:
        self._table.ensure()
        head = {
            "PartitionKey": log_name(entry.workspace_id),
            "RowKey": HEAD_ROW_KEY,
            "sequence": entry.sequence,
            "hash": entry.hash,
        }
        operations: list[_Operation] = [("create", _entity(entry))]
        if after is None:
            operations.append(("create", head))
        else:
            conditional = {
                "mode": UpdateMode.REPLACE,
                "etag": after.version,
                "match_condition": MatchConditions.IfNotModified,
            }
            operations.append(("update", head, conditional))
        with translated("appending to the audit log"):
            try:
                self._table.client.submit_transaction(operations)
            except TableTransactionError as error:
                if error.status_code in LOST_RACE_STATUSES:
                    return False
                raise
        return True

    def read(self, workspace_id: str | None) -> AuditChain:
        with translated("reading the audit log"):
            try:
                entities = list(
                    self._table.client.query_entities(
                        "PartitionKey eq @log", parameters={"log": log_name(workspace_id)}
                    )
                )
            except ResourceNotFoundError:
                entities = []
        head = None
        entries = []
        for entity in entities:  # the service lists a partition in RowKey order
            if entity["RowKey"] == HEAD_ROW_KEY:
                head = _head(entity)
            elif entity["RowKey"].isdecimal():  # what int() reads
                entries.append(_entry(entity))
        return AuditChain(entries=entries, head=head)

    def workspaces(self) -> list[str | None]:
        # A full scan rather than a query for heads: a chain whose head was deleted must still be found.
        with translated("listing the audit logs"):
            try:
                names = {e["PartitionKey"] for e in self._table.client.list_entities(select=["PartitionKey"])}
            except ResourceNotFoundError:
                return []
        return [workspace_of_log(name) for name in sorted(names)]


def _entity(entry: AuditEntry) -> dict[str, Any]:
    return {
        "PartitionKey": log_name(entry.workspace_id),
        "RowKey": row_key(entry.sequence),
        "time": entry.time,
        "actor": entry.actor,
        "action": entry.action,
        "details": orjson.dumps(entry.details, option=orjson.OPT_SORT_KEYS).decode("utf-8"),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _entry(entity: Any) -> AuditEntry:
    """Sequence and workspace come from the keys, so a moved entity no longer hashes the same. An entity
    damaged beyond decoding becomes an entry whose hash cannot match: verify reports it as edited."""
    workspace_id = workspace_of_log(entity["PartitionKey"])
    sequence = int(entity["RowKey"])
    try:
        return AuditEntry(
            workspace_id=workspace_id,
            sequence=sequence,
            time=_typed(entity["time"], datetime),
            actor=_typed(entity["actor"], str),
            action=_typed(entity["action"], str),
            details=_typed(orjson.loads(entity["details"]), dict),
            prev_hash=_typed(entity["prev_hash"], str),
            hash=_typed(entity["hash"], str),
        )
    except (KeyError, TypeError, ValueError):
        epoch = datetime.fromtimestamp(0, UTC)
        return AuditEntry(
            workspace_id, sequence, epoch, actor="", action="", details={}, prev_hash="", hash=""
        )


def _head(entity: Any) -> AuditHead:
    """A head damaged beyond decoding counts no entries, so verify reports every entry as beyond it."""
    try:
        sequence, hash_ = _typed(entity["sequence"], int), _typed(entity["hash"], str)
    except (KeyError, TypeError):
        sequence, hash_ = 0, ""
    return AuditHead(sequence=sequence, hash=hash_, version=entity.metadata["etag"])


def _typed(value: Any, kind: type[T]) -> T:
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}")
    return value
