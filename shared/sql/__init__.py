"""One dialect-aware SQL layer: SQLite (Python's sqlite3, the embedded default), PostgreSQL (pyodbc +
psqlODBC) and T-SQL for Azure SQL (pyodbc + ODBC Driver 18). Both drivers use `?` placeholders.

Each dialect keeps its statements as files beside this module (`{dialect}/{name}.sql`), the same names
in every dialect. A statement's first line `-- params: a, b` names its placeholders in order, so the
caller binds by name and each dialect may use a value more than once. Migrations are
`V{NNNN}__{what}.sql`, several statements separated by lines holding only `GO`, applied once each
under a lock, in order, and recorded in `schema_migrations`."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from shared.aggregate import Aggregates, UsageRow
from shared.errors import DatabaseError, DatabaseUnavailable
from shared.processing import LedgerEntry
from shared.settings import SqlDialect

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
            batches = tuple(b.strip() for b in _BATCH_SEPARATOR.split(entry.read_text(encoding="utf-8")))
            found.append(Migration(int(match.group(1)), entry.name, tuple(b for b in batches if b)))
    return tuple(sorted(found, key=lambda m: m.version))


def _hour_text(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime(HOUR_FORMAT)


def _hour_value(value: Any) -> datetime:
    """sqlite3 returns the stored text, pyodbc a naive datetime; both are UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Database:
    """Connections are opened lazily, reused across invocations, and dropped after a failure."""

    def __init__(self, dialect: SqlDialect, connect: Callable[[], Any]) -> None:
        self.dialect = dialect
        self._connect = connect
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

    def apply_blob(self, entry: LedgerEntry, aggregates: Aggregates) -> bool:
        claim = statement(self.dialect, "claim_blob")
        upsert = statement(self.dialect, "upsert_usage")
        rows = orjson.dumps(
            [
                {
                    "hour": _hour_text(r.hour),
                    "log_type": r.log_type,
                    "computer": r.computer,
                    "records": r.records,
                    "bytes": r.bytes,
                }
                for r in aggregates.usage
            ]
        ).decode("utf-8")
        with self._transaction() as cursor:
            cursor.execute(
                claim.text,
                claim.bind(
                    {
                        "workspace_id": entry.workspace_id,
                        "blob_name": entry.blob_name,
                        "etag": entry.etag,
                        "sha256": entry.sha256,
                        "record_count": entry.record_count,
                    }
                ),
            )
            if cursor.rowcount != 1:
                return False
            cursor.execute(upsert.text, upsert.bind({"workspace_id": entry.workspace_id, "rows": rows}))
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

    def blob_processed(self, workspace_id: str, blob_name: str) -> bool:
        query = statement(self.dialect, "blob_processed")
        with self._transaction() as cursor:
            cursor.execute(query.text, query.bind({"workspace_id": workspace_id, "blob_name": blob_name}))
            return cursor.fetchone() is not None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                connection = self._connection
                cursor = connection.cursor()
                if self.dialect is SqlDialect.SQLITE:
                    cursor.execute("BEGIN IMMEDIATE")
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

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with suppress(Exception):  # closing a broken connection may fail; it is gone either way
                self._connection.close()
            self._connection = None


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
    if "closed" in message.lower():  # sqlite3 and pyodbc both say so of a connection closed under us
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


def _connect_odbc(connection_string: str) -> Any:
    import pyodbc  # lazy: a cold start that only ingests never loads the ODBC driver manager

    return pyodbc.connect(connection_string, autocommit=False)
