"""One dialect-aware SQL layer: SQLite (Python's sqlite3, the embedded default), PostgreSQL (pyodbc +
psqlODBC) and T-SQL for Azure SQL (pyodbc + ODBC Driver 18). Both drivers use `?` placeholders.

Each dialect keeps its statements as files beside this module (`{dialect}/{name}.sql`), the same names
in every dialect. A statement's first line `-- params: a, b` names its placeholders in order, so the
caller binds by name and each dialect may use a value more than once. Migrations are
`V{NNNN}__{what}.sql`, several statements separated by lines holding only `GO`, applied once each
under a lock, in order, and recorded in `schema_migrations`.

Two kinds of session, both on the app's one login. The processor's (`Database`): the tables' owner in
PostgreSQL, a member of `sluice_processor` (or db_owner) in Azure SQL; row-level security does not
apply to it, it writes and purges every workspace's rows, and each of its queries names its workspace.
A reader's (`Database.reader(workspace_id)` → `ReaderSession`): its own connection, bound to one
workspace and dropped to a reader principal before its first query, under row-level security (V0003,
V0004) where the engine has it:

- PostgreSQL: `sluice_bind_reader(workspace)` sets the workspace and its proof (a MAC under a key only
  the owner reads) and then `SET ROLE sluice_reader` (SELECT on the aggregate tables only). The
  policies accept a row only under a valid proof, so re-pointing the setting on that connection shows
  nothing; a session can still RESET ROLE to its login, so reader connections only ever run the
  session's fixed, parameterised statements.
- Azure SQL: `sp_set_session_context @key = N'workspace_id', @read_only = 1`, then `EXECUTE AS USER =
  N'sluice_reader_session' WITH NO REVERT`: fixed for the life of the connection, whatever runs on it
  later; the security policy's predicate reads the context and exempts no one in that session.
- SQLite: no row-level security; every reader query still carries its workspace.

A reader session closes its connection when it ends, so no binding outlives it; a connection lost
mid-session is replaced and bound again before its first query."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from shared.aggregate import Aggregates, EventRow, PerfRow, SyslogRow, UsageRow
from shared.errors import DatabaseError, DatabaseUnavailable
from shared.ids import RawBlobName, day_prefix, parse_workspace_id
from shared.processing import LedgerEntry
from shared.rawstore import parse_day_prefix
from shared.settings import SqlDialect

if TYPE_CHECKING:
    from shared.retention import HeldRows

_MIGRATION = re.compile(r"V(\d{4})__\w+\.sql")
_PARAMS = re.compile(r"--\s*params:\s*(.*)")
_BATCH_SEPARATOR = re.compile(r"^\s*GO\s*$", re.MULTILINE | re.IGNORECASE)
SQLITE_BUSY_TIMEOUT_SECONDS = 30
HOUR_FORMAT = "%Y-%m-%dT%H:%M:%S"


@dataclass(frozen=True, slots=True)
class Statement:
    text: str
    params: tuple[str, ...]

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(values[name] for name in self.params)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    batches: tuple[str, ...]


def _dialect_dir(dialect: SqlDialect) -> Any:
    return resources.files(__package__).joinpath(dialect.value)


@cache
def statement(dialect: SqlDialect, name: str) -> Statement:
    text = _dialect_dir(dialect).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    first_line = text.splitlines()[0] if text else ""
    match = _PARAMS.match(first_line)
    params = tuple(p.strip() for p in match.group(1).split(",") if p.strip()) if match else ()
    return Statement(text=text, params=params)


@cache
def migrations(dialect: SqlDialect) -> tuple[Migration, ...]:
    found = []
    for entry in _dialect_dir(dialect).iterdir():
        match = _MIGRATION.fullmatch(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), entry.name, batches(entry.read_text(encoding="utf-8")))
            )
    return tuple(sorted(found, key=lambda m: m.version))


def batches(text: str) -> tuple[str, ...]:
    """The statements of a text whose batches are separated by lines holding only `GO`."""
    return tuple(stripped for batch in _BATCH_SEPARATOR.split(text) if (stripped := batch.strip()))


def _hour_text(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime(HOUR_FORMAT)


def _hour_value(value: Any) -> datetime:
    """sqlite3 returns the stored text, pyodbc a naive datetime; both are UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _rows_json(rows: Sequence[Any], *, as_arrays: bool) -> str:
    """Aggregate rows (dataclasses of one type) as the JSON array the upsert statements read: objects
    keyed by the rows' field names, or (`as_arrays`) arrays of the fields in order; the hour as
    HOUR_FORMAT text (formatted once per distinct hour)."""
    hour_texts: dict[datetime, str] = {}

    def hour_text(value: Any) -> str:
        if not isinstance(value, datetime):
            raise TypeError(f"{type(value).__name__} is not an aggregate row's value")
        text = hour_texts.get(value)
        if text is None:
            text = hour_texts[value] = _hour_text(value)
        return text

    if as_arrays and rows:
        rows = list(map(attrgetter(*(field.name for field in fields(rows[0]))), rows))
    return orjson.dumps(rows, default=hour_text, option=orjson.OPT_PASSTHROUGH_DATETIME).decode("utf-8")


@runtime_checkable
class Recyclable(Protocol):
    """A connection that knows it must be replaced before its next use (shared.sql.azure.TokenConnection:
    the access token it was opened with is about to expire). Driver connections never say so."""

    def is_stale(self) -> bool: ...


class Database:
    """Connections are opened lazily, reused across invocations, and dropped after a failure."""

    def __init__(
        self,
        dialect: SqlDialect,
        connect: Callable[[], Any],
        *,
        on_connect: Callable[[Any], None] | None = None,
    ) -> None:
        """`on_connect(connection)` runs on each new connection before its first transaction and must
        leave it committed (a reader session binds its workspace there)."""
        self.dialect = dialect
        self._connect = connect
        self._on_connect = on_connect
        self._connection: Any = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, dialect: SqlDialect, connection: str) -> Database:
        if dialect is SqlDialect.SQLITE:
            return cls(dialect, lambda: _connect_sqlite(connection))
        return cls(dialect, lambda: _connect_odbc(connection))

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def migrate(self) -> list[int]:
        """Applies the migrations not yet recorded; safe to run concurrently and repeatedly."""
        with self._transaction() as cursor:
            # Under the lock: CREATE TABLE IF NOT EXISTS races with itself on PostgreSQL and SQL Server.
            cursor.execute(statement(self.dialect, "migrations_lock").text)
            cursor.execute(statement(self.dialect, "migrations_table").text)
        applied = []
        for migration in migrations(self.dialect):
            with self._transaction() as cursor:
                cursor.execute(statement(self.dialect, "migrations_lock").text)
                check = statement(self.dialect, "migration_applied")
                cursor.execute(check.text, check.bind({"version": migration.version}))
                if cursor.fetchone() is not None:
                    continue
                for batch in migration.batches:
                    cursor.execute(batch)
                record = statement(self.dialect, "record_migration")
                cursor.execute(
                    record.text, record.bind({"version": migration.version, "name": migration.name})
                )
                applied.append(migration.version)
        return applied

    def reader(self, workspace_id: str) -> ReaderSession:
        """A session bound to one workspace on a connection of its own (see the module's notes); use it
        as a context manager. In PostgreSQL the login must be a member of sluice_reader."""
        return ReaderSession(self.dialect, self._connect, parse_workspace_id(workspace_id))

    def apply_blob(self, entry: LedgerEntry, aggregates: Aggregates) -> bool:
        """The ledger claim, then one set-based upsert per aggregate that has rows, in one transaction:
        False (and nothing written) when the ledger already holds the blob."""
        claim = statement(self.dialect, "claim_blob")
        workspace_id = entry.workspace_id
        with self._transaction() as cursor:
            cursor.execute(
                claim.text,
                claim.bind(
                    {
                        "workspace_id": workspace_id,
                        "blob_name": entry.blob_name,
                        "etag": entry.etag,
                        "sha256": entry.sha256,
                        "record_count": entry.record_count,
                    }
                ),
            )
            if cursor.rowcount != 1:
                return False
            arrays = self.dialect is SqlDialect.SQLITE  # see sqlite/upsert_usage.sql
            # Always in this order, so concurrent processors lock the tables in the same order.
            for upsert, rows in (
                (statement(self.dialect, "upsert_usage"), aggregates.usage),
                (statement(self.dialect, "upsert_perf"), aggregates.perf),
                (statement(self.dialect, "upsert_events"), aggregates.events),
                (statement(self.dialect, "upsert_syslog"), aggregates.syslog),
            ):
                if rows:
                    cursor.execute(
                        upsert.text,
                        upsert.bind(
                            {"workspace_id": workspace_id, "rows": _rows_json(rows, as_arrays=arrays)}
                        ),
                    )
        return True

    def list_usage(self, workspace_id: str) -> list[UsageRow]:
        query = statement(self.dialect, "list_usage")
        with self._transaction() as cursor:
            cursor.execute(query.text, query.bind({"workspace_id": workspace_id}))
            fetched = cursor.fetchall()
        return [
            UsageRow(
                hour=_hour_value(hour), log_type=log_type, computer=computer, records=int(n), bytes=int(b)
            )
            for hour, log_type, computer, n, b in fetched
        ]

    def list_perf(self, workspace_id: str) -> list[PerfRow]:
        query = statement(self.dialect, "list_perf")
        with self._transaction() as cursor:
            cursor.execute(query.text, query.bind({"workspace_id": workspace_id}))
            fetched = cursor.fetchall()
        return [
            PerfRow(
                hour=_hour_value(hour),
                computer=computer,
                object_name=obj,
                counter_name=counter,
                instance_name=instance,
                samples=int(samples),
                total=float(total),
                minimum=float(low),
                maximum=float(high),
            )
            for hour, computer, obj, counter, instance, samples, total, low, high in fetched
        ]

    def list_events(self, workspace_id: str) -> list[EventRow]:
        query = statement(self.dialect, "list_events")
        with self._transaction() as cursor:
            cursor.execute(query.text, query.bind({"workspace_id": workspace_id}))
            fetched = cursor.fetchall()
        return [
            EventRow(
                hour=_hour_value(hour),
                log_type=log_type,
                computer=computer,
                event_id=int(event_id),
                level=level,
                events=int(events),
            )
            for hour, log_type, computer, event_id, level, events in fetched
        ]

    def list_syslog(self, workspace_id: str) -> list[SyslogRow]:
        query = statement(self.dialect, "list_syslog")
        with self._transaction() as cursor:
            cursor.execute(query.text, query.bind({"workspace_id": workspace_id}))
            fetched = cursor.fetchall()
        return [
            SyslogRow(
                hour=_hour_value(hour),
                computer=computer,
                facility=facility,
                severity=severity,
                messages=int(messages),
            )
            for hour, computer, facility, severity, messages in fetched
        ]

    def query_page(
        self, workspace_id: str, aggregate: str, values: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """One page of the query API, one statement (`query_{aggregate}`; shared.query.statement_values
        names the values): rows of (time bucket, key columns..., value columns...), the bucket a UTC
        datetime."""
        for query, name in (
            (statement(self.dialect, "query_usage"), "usage"),
            (statement(self.dialect, "query_perf"), "perf"),
            (statement(self.dialect, "query_events"), "events"),
            (statement(self.dialect, "query_syslog"), "syslog"),
        ):
            if name != aggregate:
                continue
            after_time = values["after_time"]
            bound = query.bind(
                {
                    "workspace_id": workspace_id,
                    "granularity": values["granularity"],
                    "from": _hour_text(values["from"]),
                    "to": _hour_text(values["to"]),
                    "limit": values["limit"],
                    "after_time": None if after_time is None else _hour_text(after_time),
                    "key_1": values.get("key_1"),
                    "key_2": values.get("key_2"),
                    "key_3": values.get("key_3"),
                    "key_4": values.get("key_4"),
                    "after_1": values.get("after_1"),
                    "after_2": values.get("after_2"),
                    "after_3": values.get("after_3"),
                    "after_4": values.get("after_4"),
                }
            )
            with self._transaction() as cursor:
                cursor.execute(query.text, bound)
                fetched = cursor.fetchall()
            return [(_hour_value(row[0]), *row[1:]) for row in fetched]
        raise ValueError(f"no query statement for {aggregate!r}")

    def blob_processed(self, workspace_id: str, blob_name: str) -> bool:
        query = statement(self.dialect, "blob_processed")
        with self._transaction() as cursor:
            cursor.execute(query.text, query.bind({"workspace_id": workspace_id, "blob_name": blob_name}))
            return cursor.fetchone() is not None

    # -- retention: every statement names its workspace ------------------------------------------------

    def purge_aggregates(self, workspace_id: str, *, before: datetime, batch_rows: int) -> int:
        """Deletes the workspace's aggregate rows of hours before `before`; returns how many."""
        deleted = 0
        for purge, _table in (
            (statement(self.dialect, "purge_usage"), "usage_hourly"),
            (statement(self.dialect, "purge_perf"), "perf_hourly"),
            (statement(self.dialect, "purge_events"), "events_hourly"),
            (statement(self.dialect, "purge_syslog"), "syslog_hourly"),
        ):
            deleted += self._delete_in_batches(
                purge.text,
                purge.bind(
                    {"workspace_id": workspace_id, "before": _hour_text(before), "batch_rows": batch_rows}
                ),
            )
        return deleted

    def purge_ledger(self, workspace_id: str, *, before: date, batch_rows: int) -> int:
        """Deletes the workspace's ledger rows of blobs of days before `before`; returns how many."""
        purge = statement(self.dialect, "purge_ledger")
        return self._delete_in_batches(
            purge.text,
            purge.bind(
                {"workspace_id": workspace_id, "before": day_prefix(before), "batch_rows": batch_rows}
            ),
        )

    def _delete_in_batches(self, text: str, values: tuple[Any, ...]) -> int:
        """Runs a bounded DELETE, each batch its own transaction (short locks, a bounded log), until one
        deletes nothing: not until one falls short, since an overlapping run may have taken part of it."""
        deleted = 0
        while True:
            with self._transaction() as cursor:
                cursor.execute(text, values)
                count = max(cursor.rowcount, 0)
            if count == 0:
                return deleted
            deleted += count

    def held_aggregates(self, workspace_id: str, *, before: datetime) -> list[HeldRows]:
        from shared.retention import HeldRows  # the operators' path: kept out of the processor's imports

        query = statement(self.dialect, "held_aggregates")
        with self._transaction() as cursor:
            cursor.execute(
                query.text, query.bind({"workspace_id": workspace_id, "before": _hour_text(before)})
            )
            fetched = cursor.fetchall()
        return [
            HeldRows(
                table=str(table),
                rows=int(rows),
                oldest=None if oldest is None else _hour_value(oldest),
                outside=int(outside or 0),
            )
            for table, rows, oldest, outside in fetched
        ]

    def held_ledger(self, workspace_id: str, *, before: date) -> HeldRows:
        from shared.retention import LEDGER_TABLE, HeldRows

        query = statement(self.dialect, "held_ledger")
        with self._transaction() as cursor:
            cursor.execute(
                query.text, query.bind({"workspace_id": workspace_id, "before": day_prefix(before)})
            )
            rows, oldest_name, outside = cursor.fetchone()
        oldest = None if oldest_name is None else RawBlobName.parse(str(oldest_name))
        return HeldRows(
            table=LEDGER_TABLE,
            rows=int(rows),
            oldest=None if oldest is None else oldest.hour,
            outside=int(outside or 0),
        )

    def ledger_days(self, workspace_id: str, *, since: date) -> list[date]:
        """The days, from `since` on, of the blobs the ledger holds."""
        query = statement(self.dialect, "ledger_days")
        with self._transaction() as cursor:
            cursor.execute(query.text, query.bind({"workspace_id": workspace_id, "since": day_prefix(since)}))
            fetched = cursor.fetchall()
        return [day for (prefix,) in fetched if (day := parse_day_prefix(str(prefix))) is not None]

    def list_ledger_names(self, workspace_id: str, *, day: date) -> list[str]:
        query = statement(self.dialect, "list_ledger_names")
        with self._transaction() as cursor:
            cursor.execute(
                query.text,
                query.bind(
                    {
                        "workspace_id": workspace_id,
                        "day": day_prefix(day),
                        "next_day": day_prefix(day + timedelta(days=1)),
                    }
                ),
            )
            return [str(name) for (name,) in cursor.fetchall()]

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            try:
                if isinstance(self._connection, Recyclable) and self._connection.is_stale():
                    self._drop_connection()
                if self._connection is None:
                    self._connection = self._connect()
                    self._bind_session(self._connection)
                connection = self._connection
                cursor = connection.cursor()
                if self.dialect is SqlDialect.SQLITE:
                    cursor.execute("BEGIN IMMEDIATE")
            except DatabaseError:
                self._drop_connection()
                raise
            except Exception as error:
                self._drop_connection()
                raise DatabaseUnavailable(
                    f"Cannot connect to the {self.dialect} database: {error}"
                ) from error
            try:
                yield cursor
                connection.commit()
            except BaseException as error:
                with suppress(Exception):  # a broken connection may not roll back; it is dropped below
                    connection.rollback()
                if not _is_driver_error(error):
                    raise
                if _is_transient(error):
                    self._drop_connection()
                    raise DatabaseUnavailable(f"The {self.dialect} database failed: {error}") from error
                raise DatabaseError(f"The {self.dialect} database refused a statement: {error}") from error

    def _bind_session(self, connection: Any) -> None:
        if self._on_connect is None:
            return
        try:
            self._on_connect(connection)
        except Exception as error:
            if not _is_driver_error(error) or _is_transient(error):
                raise
            # Connected, but the server refused the session's setup (say a reader login that is not a
            # member of sluice_reader): another attempt would be refused alike.
            raise DatabaseError(f"The {self.dialect} database refused the session: {error}") from error

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with suppress(Exception):  # closing a broken connection may fail; it is gone either way
                self._connection.close()
            self._connection = None


class ReaderSession:
    """Reads one workspace's aggregates on a connection bound to it (see the module's notes): the
    workspace is fixed when the session is made, and no method takes another one."""

    def __init__(self, dialect: SqlDialect, connect: Callable[[], Any], workspace_id: str) -> None:
        self.workspace_id = workspace_id
        self._dialect = dialect
        self._database = Database(dialect, connect, on_connect=self._bind)

    def _bind(self, connection: Any) -> None:
        query = statement(self._dialect, "bind_reader")
        cursor = connection.cursor()
        try:
            # The parameters go to the batch with placeholders; one without is sent as it is (ad hoc).
            for batch in batches(query.text):
                if "?" in batch:
                    cursor.execute(batch, query.bind({"workspace_id": self.workspace_id}))
                else:
                    cursor.execute(batch)
            connection.commit()  # a session-level setting made in a rolled-back transaction is undone
        except BaseException:
            with suppress(Exception):  # the connection is dropped by the caller either way
                connection.rollback()
            raise

    def list_usage(self) -> list[UsageRow]:
        return self._database.list_usage(self.workspace_id)

    def list_perf(self) -> list[PerfRow]:
        return self._database.list_perf(self.workspace_id)

    def list_events(self) -> list[EventRow]:
        return self._database.list_events(self.workspace_id)

    def list_syslog(self) -> list[SyslogRow]:
        return self._database.list_syslog(self.workspace_id)

    def query_page(self, aggregate: str, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Always on the session's workspace: `values` cannot name another."""
        return self._database.query_page(self.workspace_id, aggregate, values)

    def close(self) -> None:
        self._database.close()

    def __enter__(self) -> ReaderSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# Azure SQL's transient errors (throttling, failover, deadlock victim) by native error number.
_TRANSIENT_SQL_SERVER_ERRORS = frozenset(
    {"1205", "4060", "4221", "40143", "40197", "40501", "40540", "40613", "49918", "49919", "49920"}
)
_NATIVE_ERROR = re.compile(r"\((\d{4,5})\)")


def _is_driver_error(error: BaseException) -> bool:
    return isinstance(error, sqlite3.Error) or type(error).__module__ == "pyodbc"


def _is_transient(error: BaseException) -> bool:
    """Worth retrying on a new connection: the connection broke, or the server asked us to come back."""
    message = str(error)
    lowered = message.lower()
    if "closed" in lowered:  # sqlite3 and pyodbc both say so of a connection closed under us
        return True
    if "connection has been lost" in lowered:  # psqlODBC (HY000) finding an idle connection dead
        return True
    if isinstance(error, sqlite3.Error):
        return isinstance(error, sqlite3.OperationalError) and ("locked" in message or "busy" in message)
    # SQLSTATE class 08 = connection exception, 40 = transaction rollback (serialization, deadlock).
    state = error.args[0] if error.args and isinstance(error.args[0], str) else ""
    if state[:2] in ("08", "40") or state in ("HYT00", "HYT01"):
        return True
    return any(number in _TRANSIENT_SQL_SERVER_ERRORS for number in _NATIVE_ERROR.findall(message))


def _connect_sqlite(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=SQLITE_BUSY_TIMEOUT_SECONDS
    )
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


def odbc() -> Any:
    """pyodbc, imported lazily (a cold start that only ingests never loads the ODBC driver manager), with
    the driver manager's pooling off before any connection: each Database keeps its own connection, and
    a reader session changes its connection's principal for good (SET ROLE, EXECUTE AS ... WITH NO
    REVERT), which a pool would hand to the next borrower, the processor perhaps."""
    import pyodbc

    pyodbc.pooling = False
    return pyodbc


def _connect_odbc(connection_string: str) -> Any:
    return odbc().connect(connection_string, autocommit=False)
