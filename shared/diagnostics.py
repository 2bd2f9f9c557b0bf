"""Azure Diagnostics sources (pure): the tables the diagnostics extension writes in a customer's storage
account, read with a read-only SAS (or a storage key) and turned into raw Perf / Event / Syslog blobs
that the normal pipeline processes.

The extension's tables are keyed by time: PartitionKey is "0" + the .NET ticks of the minute (19
digits, so text order is time order) and RowKey tells apart the entities of a partition. The service
returns a query's entities ordered by PartitionKey, then RowKey, so a reader's position is the last
(PartitionKey, RowKey) it stored: the next read asks for `PartitionKey ge` that partition and skips what
is not after the position, so the rest of a partly read partition is neither lost nor read twice.

Entities of one minute keep arriving until every agent has transferred it (every
scheduledTransferPeriod, a minute or a few), so a run reads only partitions older than SETTLE_DELAY:
the position does not pass an entity that arrives within that delay. An entity that arrives later (an
agent sending its backlog after it or the storage account was down) sorts behind the position and is
never read: Sluice reads what the extension transferred on time, not what it transfers late.

Two runs must not read the same entities twice. Each (source, table) has one checkpoint entity whose
ETag makes a lease: a run takes it (If-Match) before reading, renews it (If-Match) before writing each
blob, since reading the batch may have outlasted it, moves the position after the blob (If-Match again,
renewing it once more), and gives it back at the end; a renewal that fails means another run has the
table, and this one stops. Blob names hold a fresh uuid4 (shared.ingest.RawWriter), so the lease is
what keeps an overlapping run from writing the same entities again: it finds the lease taken and leaves
the table alone. What remains is ingest's at-least-once window: a run that stops between committing a
blob and moving the position leaves that blob's entities to be read again after its lease expires.

A blob the workspace's rate or daily cap refuses (TooManyRequests, DailyCapExceeded: nothing stored)
ends the table's turn without failing: the lease is given back and a later run goes on from the
position. The entities are the customer's, so turning one into a record never raises whatever its
properties hold (a value the extension would not write becomes no column), and a source that fails in
any way is logged while the other sources are read."""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import orjson

from shared.errors import BadRequest, DiagnosticsIncomplete, NotFound, SluiceError, TooManyRequests
from shared.ingest import Batch, ParsedBody, Writer
from shared.rawstore import gzip_bytes
from shared.records import MAX_PAST
from shared.telemetry import workspace_log
from shared.workspaces import SecretStore, Workspace, WorkspaceRegistry, WorkspaceState

# A run reads only partitions at least this old (see the module's docstring).
SETTLE_DELAY = timedelta(minutes=15)
# How long a run holds a table after taking or renewing its lease. It renews before and after writing
# each blob, so only a blob's write must fit in it (seconds): a lease still held this long belongs to a
# run that stopped.
LEASE = timedelta(minutes=10)
# A new source starts reading this far back: older records would lose their time anyway (Azure's
# TimeGenerated rule, shared.records).
INITIAL_LOOKBACK = MAX_PAST
# One raw blob per batch, well under the 30 MB a blob may hold.
BATCH_RECORDS = 20_000
BATCH_BYTES = 8 * 1024 * 1024
TIME_GENERATED_FIELD = "TimeGenerated"
# Permissions of an account SAS (sp=) and of a table SAS that only read: read/query and list.
READ_ONLY_PERMISSIONS = frozenset("rl")
PERMISSION_NAMES = {
    "a": "add",
    "c": "create",
    "d": "delete",
    "u": "update",
    "w": "write",
    "p": "process",
    "y": "permanent delete",
}
# The parameters of an account SAS and of a table SAS. The service takes one value of each, so one given
# twice (`sp=r&...&SP=rwdl`) could grant what the checked one hides: refused.
SAS_PARAMETERS = frozenset(
    {"sp", "sig", "se", "st", "tn", "ss", "srt", "si", "sv", "spk", "srk", "epk", "erk", "sip", "spr"}
)
LOOPBACK_HOSTS = frozenset({"localhost"})

_TICKS_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
# A number written as text: ASCII digits only (str.isdigit() takes "²" too), at most an Int64's 19.
_DECIMAL = re.compile(r"-?[0-9]{1,19}")
_INT64 = range(-(2**63), 2**63)
_SOURCE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Who the record came from: the role instance (a VM's name) for the Windows tables, the host for Linux.
_COMPUTER_FIELDS = ("RoleInstance", "Host", "DeploymentId")
_TIME_FIELDS = ("PreciseTimeStamp", "TIMESTAMP")
_EVENT_LEVELS = {0: "Information", 1: "Critical", 2: "Error", 3: "Warning", 4: "Information", 5: "Verbose"}
_SYSLOG_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_SYSLOG_FACILITIES = (
    *("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news"),
    *("uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock"),
    *(f"local{n}" for n in range(8)),
)

log = logging.getLogger("sluice.diagnostics")


class DiagnosticsTable(StrEnum):
    PERF = "WADPerformanceCountersTable"
    EVENT = "WADWindowsEventLogsTable"
    SYSLOG = "LinuxSyslogVer2v0"

    @property
    def log_type(self) -> str:
        return _LOG_TYPES[self]


_LOG_TYPES = {
    DiagnosticsTable.PERF: "Perf",
    DiagnosticsTable.EVENT: "Event",
    DiagnosticsTable.SYSLOG: "Syslog",
}


class CredentialKind(StrEnum):
    SAS = "sas"
    KEY = "key"


@dataclass(frozen=True, slots=True)
class SourceCredential:
    kind: CredentialKind
    # The SAS token or the account key: out of repr, so no log line or traceback shows it.
    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DiagnosticsSource:
    source_id: str
    workspace_id: str
    table_endpoint: str
    tables: tuple[DiagnosticsTable, ...]
    credential_kind: CredentialKind
    credential_secret: str  # the secret store's name for the SAS or key, never the value
    created_at: datetime


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """The last entity stored; ("P", "") stands before every entity of partition P."""

    partition_key: str
    row_key: str

    @classmethod
    def before_time(cls, moment: datetime) -> Position:
        return cls(partition_key_at(moment), "")

    @classmethod
    def of(cls, entity: Mapping[str, Any]) -> Position:
        return cls(str(entity["PartitionKey"]), str(entity["RowKey"]))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    source_id: str
    table: DiagnosticsTable
    position: Position
    leased_until: datetime | None
    etag: str


@dataclass(frozen=True, slots=True)
class ReadBatch:
    records: list[bytes]  # each record's JSON text
    end: Position  # of the batch's last entity

    def body(self) -> ParsedBody:
        json_bytes = b"[" + b",".join(self.records) + b"]"
        return ParsedBody(
            json_bytes=json_bytes, stored_gzip=gzip_bytes(json_bytes), record_count=len(self.records)
        )


@dataclass(frozen=True, slots=True)
class TableReport:
    source_id: str
    workspace_id: str
    table: DiagnosticsTable
    records: int
    blobs: int
    position: Position | None  # the checkpoint after the run; None when skipped
    skipped: bool = False  # another run holds the table's lease


class SourceRegistry(Protocol):
    def list_sources(self, workspace_id: str | None = None) -> list[DiagnosticsSource]:
        """Every source, or a workspace's; [] when there are none."""

    def get_source(self, source_id: str) -> DiagnosticsSource:
        """Raises NotFound."""

    def create_source(self, source: DiagnosticsSource, *, start: Position) -> None:
        """The source and one checkpoint per table at `start`, all at once."""

    def delete_source(self, source_id: str) -> None:
        """The source and its checkpoints; succeeds when already gone."""

    def get_checkpoint(self, source_id: str, table: DiagnosticsTable) -> Checkpoint:
        """Raises NotFound."""

    def try_replace_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint | None:
        """Stores `checkpoint` if the stored one still has its etag (If-Match) and returns it with the
        new etag; None when another run changed it meanwhile."""


class DiagnosticsTables(Protocol):
    """The customer's storage account, read only."""

    def query_entities(
        self, endpoint: str, table: DiagnosticsTable, credential: SourceCredential, query_filter: str
    ) -> Iterator[dict[str, Any]]:
        """The matching entities in the service's order (PartitionKey, then RowKey), page by page, as
        plain values (datetimes in UTC, Int64 as int); none when the table does not exist yet."""


# -- time and partition keys ---------------------------------------------------------------------------


def ticks_at(moment: datetime) -> int:
    """.NET ticks: 100 ns since 0001-01-01 UTC."""
    return (moment.astimezone(UTC) - _TICKS_EPOCH) // timedelta(microseconds=1) * 10


def moment_of_ticks(ticks: int) -> datetime | None:
    """None when the ticks are not a time a datetime holds (before 0001 or after 9999)."""
    try:
        return _TICKS_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def partition_key_at(moment: datetime) -> str:
    return f"{ticks_at(moment):019d}"


def moment_of_partition_key(partition_key: str) -> datetime | None:
    """The time a diagnostics PartitionKey names; None when it is not ticks."""
    ticks = _integer(partition_key)
    return None if ticks is None else moment_of_ticks(ticks)


def read_filter(position: Position, *, before_partition: str) -> str:
    """From the position's partition on (entities_after skips what was stored already), up to the
    partitions that may still be filling."""
    return (
        f"PartitionKey ge {_literal(position.partition_key)} and PartitionKey lt {_literal(before_partition)}"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def entities_after(entities: Iterable[Mapping[str, Any]], position: Position) -> Iterator[Mapping[str, Any]]:
    return (entity for entity in entities if Position.of(entity) > position)


# -- entities to records -------------------------------------------------------------------------------


def to_record(table: DiagnosticsTable, entity: Mapping[str, Any]) -> dict[str, Any]:
    """The Log Analytics record (column names of its Perf, Event and Syslog tables) an entity becomes."""
    record: dict[str, Any] = {
        TIME_GENERATED_FIELD: _time_generated(entity),
        "Computer": _first_text(entity, _COMPUTER_FIELDS),
        **_MAPPERS[table](entity),
    }
    return {name: value for name, value in record.items() if value is not None}


def _perf(entity: Mapping[str, Any]) -> dict[str, Any]:
    path = _text(entity.get("CounterName"))
    object_name, instance_name, counter_name = split_counter_path(path or "")
    return {
        "ObjectName": object_name,
        "CounterName": counter_name,
        "InstanceName": instance_name,
        "CounterValue": _number(entity.get("CounterValue")),
        "CounterPath": path,
        "SourceSystem": "AzureStorage",
    }


def _event(entity: Mapping[str, Any]) -> dict[str, Any]:
    level = _integer(entity.get("Level"))
    return {
        "EventID": _integer(entity.get("EventId")),
        "EventLevel": level,
        "EventLevelName": None if level is None else _EVENT_LEVELS.get(level, str(level)),
        "EventLog": _text(entity.get("Channel")),
        "Source": _text(entity.get("ProviderName")),
        "RenderedDescription": _text(entity.get("Description")),
        "AzureDeploymentID": _text(entity.get("DeploymentId")),
        "Role": _text(entity.get("Role")),
        "SourceSystem": "Azure",
    }


def _syslog(entity: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Facility": _named(entity.get("Facility"), _SYSLOG_FACILITIES),
        "SeverityLevel": _named(entity.get("Severity"), _SYSLOG_SEVERITIES),
        "SyslogMessage": _text(entity.get("Msg")),
        "HostName": _text(entity.get("SendingHost")),
        "EventTime": _iso(_moment(entity.get("EventTime"))),
        "SourceSystem": "Linux",
    }


_MAPPERS: dict[DiagnosticsTable, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    DiagnosticsTable.PERF: _perf,
    DiagnosticsTable.EVENT: _event,
    DiagnosticsTable.SYSLOG: _syslog,
}


def split_counter_path(path: str) -> tuple[str, str, str]:
    r"""(object, instance, counter) of a counter path: `\Processor(_Total)\% Processor Time`, with an
    optional `\\computer` first; no instance is "". An instance may hold parentheses of its own
    (`\Network Interface(Intel(R) Gigabit)\Bytes Total/sec`): it ends at the last `)\`."""
    body = path
    if body.startswith("\\\\"):
        body = body[2:].partition("\\")[2]
    body = body.removeprefix("\\")
    if "\\" not in body:
        return "", "", body
    paren, slash = body.find("("), body.find("\\")
    close = body.rfind(")\\")
    if -1 < paren < slash and close > paren:
        return body[:paren], body[paren + 1 : close], body[close + 2 :]
    object_name, _, counter_name = body.partition("\\")
    return object_name, "", counter_name


def _time_generated(entity: Mapping[str, Any]) -> str | None:
    for name in _TIME_FIELDS:
        moment = _moment(entity.get(name))
        if moment is not None:
            return _iso(moment)
    ticks = _integer(entity.get("EventTickCount"))
    moment = moment_of_ticks(ticks) if ticks is not None and ticks > 0 else None  # Perf entities hold 0
    return _iso(moment or moment_of_partition_key(str(entity.get("PartitionKey", ""))))


def _moment(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # an offset time at the calendar's edge: 0001-01-01T00:00+01:00
        return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _text(value: Any) -> str | None:
    """A String property. A lone surrogate (JSON may escape one, UTF-8 cannot hold it) becomes "?"."""
    if not isinstance(value, str) or not value:
        return None
    return value.encode("utf-8", "replace").decode()


def _first_text(entity: Mapping[str, Any], names: Sequence[str]) -> str | None:
    return next((text for text in map(_text, map(entity.get, names)) if text is not None), None)


def _integer(value: Any) -> int | None:
    """An Int32 or Int64 property, or one written as text; None for anything else, a bool included."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in _INT64:
        return None
    return value


def _number(value: Any) -> float | None:
    """A Double property, or an Int32 or Int64 one; text is not a counter's value."""
    if isinstance(value, float):
        return value
    integer = None if isinstance(value, str) else _integer(value)
    return None if integer is None else float(integer)


def _named(value: Any, names: Sequence[str]) -> str | None:
    """A syslog code as its name (3 → "err"); a name stays as written, lower-cased."""
    code = _integer(value)
    if code is not None:
        return names[code] if 0 <= code < len(names) else str(code)
    text = _text(value)
    return None if text is None else text.lower()


def batches(
    table: DiagnosticsTable,
    entities: Iterable[Mapping[str, Any]],
    *,
    max_records: int = BATCH_RECORDS,
    max_bytes: int = BATCH_BYTES,
) -> Iterator[ReadBatch]:
    """Consecutive batches of records, each within both limits, each ending at an entity's position."""
    records: list[bytes] = []
    size = 0
    end: Position | None = None
    for entity in entities:
        record = orjson.dumps(to_record(table, entity))
        if end is not None and (len(records) >= max_records or size + len(record) > max_bytes):
            yield ReadBatch(records=records, end=end)
            records, size = [], 0
        records.append(record)
        size += len(record) + 1  # and its comma
        end = Position.of(entity)
    if end is not None:
        yield ReadBatch(records=records, end=end)


# -- registration --------------------------------------------------------------------------------------


def parse_tables(names: Sequence[str] | None) -> tuple[DiagnosticsTable, ...]:
    """The tables named (as Azure does, ignoring case), or all three."""
    if not names:
        return tuple(DiagnosticsTable)
    known = {table.value.lower(): table for table in DiagnosticsTable}
    chosen: list[DiagnosticsTable] = []
    for name in names:
        table = known.get(name.lower())
        if table is None:
            raise BadRequest(
                f"{name[:100]!r} is not a diagnostics table Sluice reads; use {', '.join(DiagnosticsTable)}."
            )
        if table not in chosen:
            chosen.append(table)
    return tuple(chosen)


def parse_table_endpoint(url: str) -> str:
    """`https://{account}.table.core.windows.net`; plain http only for an emulator on this machine, since
    the SAS travels with every request."""
    parts = urlsplit(url.strip())
    secure = parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname))
    if not secure or not parts.hostname:
        raise BadRequest(
            "The table endpoint must be an https URL such as https://ACCOUNT.table.core.windows.net."
        )
    if parts.query or parts.fragment:
        raise BadRequest("The table endpoint must not carry a query: give the SAS with --sas.")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def account_name(endpoint: str) -> str:
    """The storage account of a table endpoint: the first label of its host, or, for an emulator on this
    machine (`http://127.0.0.1:10002/devstoreaccount1`), the first segment of its path."""
    parts = urlsplit(endpoint)
    if _is_loopback(parts.hostname):
        return parts.path.strip("/").partition("/")[0]
    return (parts.hostname or "").partition(".")[0]


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_only_sas(token: str, *, tables: Sequence[DiagnosticsTable], now: datetime) -> str:
    """The token (without a leading `?` or URL) when it is a SAS that can only read the tables, valid
    now; BadRequest saying what is wrong otherwise. An account SAS (ss=, srt=) and a table SAS (tn=) both
    carry their permissions in sp=: read (for a table SAS: query) and list may be granted, nothing else.
    Parameter names are read as the service reads them, percent-decoded and ignoring case."""
    query = token.strip().rpartition("?")[2]
    fields: dict[str, str] = {}
    for given_name, value in parse_qsl(query, keep_blank_values=True):
        name = given_name.lower()
        if name in fields and name in SAS_PARAMETERS:
            raise BadRequest(
                f"The SAS gives {name}= more than once: the service would read only one of them, so Sluice "
                "cannot tell what it grants. Give each parameter once."
            )
        fields[name] = value
    permissions = fields.get("sp", "")
    if not permissions or not fields.get("sig"):
        raise BadRequest(
            "The SAS has no sp= (permissions) or sig= (signature): it is not a shared access signature."
        )
    beyond = sorted(set(permissions) - READ_ONLY_PERMISSIONS)
    if beyond:
        granted = ", ".join(f"{PERMISSION_NAMES.get(letter, 'unknown')} ({letter})" for letter in beyond)
        raise BadRequest(
            f"The SAS grants {granted} (sp={permissions}): Sluice reads diagnostics tables and must never be "
            "able to change them. Give a SAS with read and list only (sp=rl), or read only (sp=r)."
        )
    if "r" not in permissions:
        raise BadRequest(f"The SAS does not grant read (sp={permissions}): the tables could not be queried.")
    if "ss" in fields or "srt" in fields:
        services, resource_types = fields.get("ss", ""), fields.get("srt", "")
        if "t" not in services or "o" not in resource_types:
            raise BadRequest(
                f"The account SAS does not reach table entities (ss={services}, srt={resource_types}): "
                "it needs the table service (t in ss=) and objects (o in srt=)."
            )
    table_name = fields.get("tn")
    if table_name is not None and [t.value.lower() for t in tables] != [table_name.lower()]:
        raise BadRequest(
            f"The SAS is for the table {table_name!r} only: give --tables {table_name}, or an account SAS."
        )
    expiry = _moment(fields.get("se", "").replace("Z", "+00:00"))
    if expiry is not None and expiry <= now:
        raise BadRequest(f"The SAS expired at {expiry.isoformat()}.")
    return query


def sas_secret_name(source_id: str) -> str:
    return f"diag-{source_id}-sas"


def parse_source_id(value: str) -> str:
    if not _SOURCE_ID.fullmatch(value.lower()):
        raise BadRequest("A diagnostics source id is a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).")
    return value.lower()


def register_source(
    *,
    sources: SourceRegistry,
    secrets: SecretStore,
    workspace: Workspace,
    table_endpoint: str,
    tables: Sequence[str] | None,
    sas: str | None,
    key_secret: str | None,
    now: datetime,
) -> DiagnosticsSource:
    """A new source of the workspace. A SAS is checked to grant reading only, then kept in the secret
    store under the source's name; a key is named by the secret that already holds it (a key cannot
    be limited to reading: a SAS is the safer choice). The registry entry comes last, so the reader
    never sees a source without its credential."""
    endpoint = parse_table_endpoint(table_endpoint)
    chosen = parse_tables(tables)
    source_id = str(uuid.uuid4())
    if sas is not None:
        kind, secret_name = CredentialKind.SAS, sas_secret_name(source_id)
        secrets.set_secret(secret_name, read_only_sas(sas, tables=chosen, now=now))
    elif key_secret is not None:
        kind, secret_name = CredentialKind.KEY, key_secret
        secrets.get_secret(secret_name)  # NotFound now rather than at the first run
    else:
        raise BadRequest("A diagnostics source needs a SAS or the name of the secret holding its key.")
    source = DiagnosticsSource(
        source_id=source_id,
        workspace_id=workspace.workspace_id,
        table_endpoint=endpoint,
        tables=chosen,
        credential_kind=kind,
        credential_secret=secret_name,
        created_at=now,
    )
    sources.create_source(source, start=Position.before_time(now - INITIAL_LOOKBACK))
    return source


def remove_source(
    *, sources: SourceRegistry, secrets: SecretStore, workspace_id: str, source_id: str
) -> DiagnosticsSource:
    """Registry first, so no run starts with a source whose SAS is gone; a key's secret is the operator's
    and stays."""
    source = sources.get_source(source_id)
    if source.workspace_id != workspace_id:
        raise NotFound(f"Diagnostics source {source_id} does not exist in workspace {workspace_id}.")
    sources.delete_source(source_id)
    if source.credential_kind is CredentialKind.SAS:
        secrets.delete_secret(source.credential_secret)
    return source


# -- reading -------------------------------------------------------------------------------------------


class DiagnosticsReader:
    """Reads every registered source's tables from their checkpoints into raw blobs. A source that fails
    (its SAS expired, its account unreachable) is logged and the others are read all the same."""

    def __init__(
        self,
        *,
        sources: SourceRegistry,
        tables: DiagnosticsTables,
        secrets: SecretStore,
        workspaces: WorkspaceRegistry,
        writer: Writer,
        clock: Callable[[], datetime],
        max_records: int = BATCH_RECORDS,
        max_bytes: int = BATCH_BYTES,
    ) -> None:
        self._sources = sources
        self._tables = tables
        self._secrets = secrets
        self._workspaces = workspaces
        self._writer = writer
        self._clock = clock
        self._max_records = max_records
        self._max_bytes = max_bytes

    def run(self) -> list[TableReport]:
        """Every source gets its turn even if another fails; the failures are raised together at the
        end (DiagnosticsIncomplete, carrying the reports of what was read)."""
        reports: list[TableReport] = []
        failed: list[str] = []
        for source in self._sources.list_sources():
            try:
                reports.extend(self.read_source(source))
            except Exception as error:
                # Whatever one customer's source does must not keep the others from being read; only an
                # error nobody foresaw needs its traceback.
                known = error if isinstance(error, SluiceError) else None
                workspace_log(log, source.workspace_id).error(
                    "diagnostics source %s was not read: %s",
                    source.source_id,
                    f"{known.code}: {known.message}" if known else repr(error),
                    exc_info=known is None,
                )
                failed.append(source.source_id)
        if failed:
            raise DiagnosticsIncomplete(
                f"{len(failed)} diagnostics source(s) could not be read: {', '.join(failed)}.",
                reports=reports,
            )
        return reports

    def read_source(self, source: DiagnosticsSource) -> list[TableReport]:
        workspace = self._workspaces.get_workspace(source.workspace_id)
        if workspace.state is not WorkspaceState.ACTIVE:
            workspace_log(log, source.workspace_id).info(
                "diagnostics source %s skipped: the workspace is %s", source.source_id, workspace.state
            )
            return []
        credential = SourceCredential(
            source.credential_kind, self._secrets.get_secret(source.credential_secret)
        )
        return [self._read_table(source, workspace, table, credential) for table in source.tables]

    def _read_table(
        self,
        source: DiagnosticsSource,
        workspace: Workspace,
        table: DiagnosticsTable,
        credential: SourceCredential,
    ) -> TableReport:
        wlog = workspace_log(log, source.workspace_id)
        now = self._clock()
        checkpoint = self._take_lease(self._sources.get_checkpoint(source.source_id, table), now=now)
        report = TableReport(
            source_id=source.source_id,
            workspace_id=source.workspace_id,
            table=table,
            records=0,
            blobs=0,
            position=(checkpoint.position if checkpoint else None),
            skipped=checkpoint is None,
        )
        if checkpoint is None:
            wlog.info("%s of diagnostics source %s is being read by another run", table, source.source_id)
            return report
        entities = self._tables.query_entities(
            source.table_endpoint,
            table,
            credential,
            read_filter(checkpoint.position, before_partition=partition_key_at(now - SETTLE_DELAY)),
        )
        for batch in batches(
            table,
            entities_after(entities, checkpoint.position),
            max_records=self._max_records,
            max_bytes=self._max_bytes,
        ):
            # Reading the batch may have outlasted the lease: unless it is still this run's, another run
            # may be writing these entities already.
            checkpoint = self._renewed(checkpoint, checkpoint.position)
            if checkpoint is None:
                wlog.warning(
                    "%s of diagnostics source %s: another run took the table while this one read, after "
                    "%d records; it goes on from the checkpoint",
                    table,
                    source.source_id,
                    report.records,
                )
                return report
            try:
                self._write(source, workspace, table, batch)
            except TooManyRequests as refused:
                self._release(checkpoint)
                wlog.warning(
                    "%s of diagnostics source %s stops for now after %d records: %s: %s",
                    table,
                    source.source_id,
                    report.records,
                    refused.code,
                    refused.message,
                )
                return report
            report = replace(
                report,
                records=report.records + len(batch.records),
                blobs=report.blobs + 1,
                position=batch.end,
            )
            checkpoint = self._renewed(checkpoint, batch.end)
            if checkpoint is None:
                wlog.warning(
                    "%s of diagnostics source %s: the lease was lost after %d records, which another run "
                    "may read again",
                    table,
                    source.source_id,
                    report.records,
                )
                return report
        self._release(checkpoint)
        wlog.info(
            "read %d %s records of diagnostics source %s into %d blobs",
            report.records,
            table.log_type,
            source.source_id,
            report.blobs,
        )
        return report

    def _take_lease(self, stored: Checkpoint, *, now: datetime) -> Checkpoint | None:
        """The checkpoint leased to this run; None while another run holds it or took it just now. A run
        that fails keeps its lease until it expires; the next run after that goes on from the position."""
        if stored.leased_until is not None and stored.leased_until > now:
            return None
        return self._sources.try_replace_checkpoint(replace(stored, leased_until=now + LEASE))

    def _renewed(self, checkpoint: Checkpoint, position: Position) -> Checkpoint | None:
        """The checkpoint at `position`, leased for another LEASE from now; None when another run has
        changed it since this run last stored it."""
        return self._sources.try_replace_checkpoint(
            replace(checkpoint, position=position, leased_until=self._clock() + LEASE)
        )

    def _release(self, checkpoint: Checkpoint) -> None:
        self._sources.try_replace_checkpoint(replace(checkpoint, leased_until=None))

    def _write(
        self, source: DiagnosticsSource, workspace: Workspace, table: DiagnosticsTable, batch: ReadBatch
    ) -> None:
        self._writer.write(
            Batch(
                workspace=workspace,
                log_type=table.log_type,
                body=batch.body(),
                received_at=self._clock(),
                metadata={
                    "time_generated_field": TIME_GENERATED_FIELD,
                    "diagnostics_source": source.source_id,
                    "diagnostics_table": table.value,
                },
            )
        )
