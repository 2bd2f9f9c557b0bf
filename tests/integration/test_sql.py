"""shared.sql.Database on real engines (SQLite file, PostgreSQL through psqlODBC), and the T-SQL text
that cannot run here checked by parsing it and by matching it against what the code binds."""

from __future__ import annotations

import ast
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

import shared.sql as sql_module
from shared.aggregate import Aggregates, UsageRow
from shared.errors import DatabaseUnavailable
from shared.processing import LedgerEntry
from shared.settings import SqlDialect
from shared.sql import Database, batches
from tests.support.concurrency import THREAD_TIMEOUT_SECONDS, run_together
from tests.support.postgres import PostgresCluster, PostgresDatabase
from tests.support.reader_sessions import EXECUTE_AS_READER, uncommented
from tests.support.runtime import SqlTarget

pytestmark = pytest.mark.integration

SQL_DIR = Path(sql_module.__file__).parent
ALL_DIALECTS = [d.value for d in SqlDialect]
HOUR = datetime(2024, 5, 1, 13, tzinfo=UTC)
RACE_ROUNDS = 5
MIGRATE_RACE_ROUNDS = 10


def ws() -> str:
    return str(uuid.uuid4())


def entry(workspace_id: str, blob_name: str | None = None, *, records: int = 3) -> LedgerEntry:
    return LedgerEntry(
        workspace_id=workspace_id,
        blob_name=blob_name or f"raw/2024/05/01/13/Perf_CL/{uuid.uuid4().hex}.json.gz",
        etag='"0x8DC0000000000"',
        sha256="ab" * 32,
        record_count=records,
    )


def usage_of(rows: list[UsageRow]) -> Aggregates:
    return Aggregates(usage=rows)


def usage(records: int, size: int, *, computer: str = "web-1", log_type: str = "Perf_CL") -> UsageRow:
    return UsageRow(hour=HOUR, log_type=log_type, computer=computer, records=records, bytes=size)


@pytest.fixture
def database(sql_target: SqlTarget) -> Iterator[Database]:
    db = Database.open(sql_target.dialect, sql_target.connection)
    db.migrate()
    yield db
    db.close()


# -- migrations --------------------------------------------------------------------------------------


def test_given_empty_database_when_migrating_twice_then_applied_once_and_second_returns_nothing(
    sql_target: SqlTarget,
) -> None:
    db = Database.open(sql_target.dialect, sql_target.connection)
    try:
        first = db.migrate()
        second = db.migrate()
        assert first == [m.version for m in sql_module.migrations(sql_target.dialect)]
        assert first, "there is at least one migration"
        assert second == []
        assert db.list_usage(ws()) == []
    finally:
        db.close()


def test_given_migrated_database_when_a_new_connection_migrates_then_nothing_is_reapplied(
    sql_target: SqlTarget,
) -> None:
    first, second = (Database.open(sql_target.dialect, sql_target.connection) for _ in range(2))
    try:
        assert first.migrate()
        assert second.migrate() == []
    finally:
        first.close()
        second.close()


def test_given_two_connections_when_migrating_concurrently_on_postgresql_then_applied_exactly_once(
    postgres_cluster: PostgresCluster,
) -> None:
    expected = [m.version for m in sql_module.migrations(SqlDialect.POSTGRESQL)]
    for _ in range(MIGRATE_RACE_ROUNDS):
        database = postgres_cluster.create_database("sluice_migrate_race")
        databases = [Database.open(SqlDialect.POSTGRESQL, database.connection_string) for _ in range(2)]
        try:
            results = run_together(2, lambda i, dbs=databases: dbs[i].migrate())  # type: ignore[misc]
            # Each migration is its own transaction under the lock, so the two may share the work
            # (one applies V1, the other V2...): each version is applied once, and each migrator
            # applies its share in order.
            assert sorted(results[0] + results[1]) == expected
            assert all(applied == sorted(applied) for applied in results)
            count = postgres_cluster.admin_execute(
                "SELECT count(*) FROM schema_migrations", database=database.name
            )
            assert count[0][0] == len(expected)
        finally:
            for db in databases:
                db.close()
            postgres_cluster.drop_database(database.name)


def test_given_another_instance_mid_migration_on_postgresql_when_migrating_then_it_waits_and_succeeds(
    postgres_cluster: PostgresCluster, pg_database: PostgresDatabase
) -> None:
    """Deterministic form of the race: instance 1 holds the migration lock and has created
    schema_migrations without committing yet; instance 2 starts migrate(); then instance 1 commits."""
    import pyodbc

    first = pyodbc.connect(pg_database.connection_string, autocommit=False)
    second = Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string)
    outcome: dict[str, Any] = {}

    def migrate_second() -> None:
        try:
            outcome["applied"] = second.migrate()
        except Exception as error:
            outcome["error"] = error

    worker = threading.Thread(target=migrate_second)
    try:
        cursor = first.cursor()
        cursor.execute(sql_module.statement(SqlDialect.POSTGRESQL, "migrations_lock").text)
        cursor.execute(sql_module.statement(SqlDialect.POSTGRESQL, "migrations_table").text)
        worker.start()
        wait_until_blocked(postgres_cluster, pg_database.name)
        first.commit()
        worker.join(THREAD_TIMEOUT_SECONDS)
        assert not worker.is_alive()
    finally:
        first.close()
        worker.join(THREAD_TIMEOUT_SECONDS)
        second.close()

    if "error" in outcome:
        raise outcome["error"]
    assert outcome["applied"] == [m.version for m in sql_module.migrations(SqlDialect.POSTGRESQL)]


def wait_until_blocked(cluster: PostgresCluster, database: str) -> None:
    """Waits (bounded) until a session of `database` waits on a lock."""
    deadline = time.monotonic() + THREAD_TIMEOUT_SECONDS
    query = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock'"
    while time.monotonic() < deadline:
        if cluster.admin_execute(query)[0][0] > 0:
            return
        time.sleep(0.02)
    raise AssertionError("the second migrator never waited on a lock")


# -- the ledger and the aggregates -------------------------------------------------------------------


def test_given_a_blob_when_applied_twice_then_second_is_refused_and_totals_count_once(
    database: Database,
) -> None:
    workspace = ws()
    ledger = entry(workspace)

    assert database.apply_blob(ledger, usage_of([usage(3, 300)])) is True
    assert database.apply_blob(ledger, usage_of([usage(3, 300)])) is False

    assert database.blob_processed(workspace, ledger.blob_name) is True
    assert database.list_usage(workspace) == [usage(3, 300)]


def test_given_two_different_blobs_when_applied_then_totals_add_up(database: Database) -> None:
    workspace = ws()

    assert database.apply_blob(entry(workspace), usage_of([usage(3, 300), usage(1, 50, computer="db-1")]))
    assert database.apply_blob(entry(workspace), usage_of([usage(2, 200)]))

    assert database.list_usage(workspace) == [usage(1, 50, computer="db-1"), usage(5, 500)]


def test_given_rows_in_two_hours_and_log_types_when_listed_then_each_key_is_separate(
    database: Database,
) -> None:
    workspace = ws()
    later = UsageRow(hour=HOUR.replace(hour=14), log_type="Perf_CL", computer="web-1", records=1, bytes=10)
    other_type = usage(4, 40, log_type="Event_CL")

    database.apply_blob(entry(workspace), usage_of([usage(2, 20), other_type, later]))

    assert database.list_usage(workspace) == [other_type, usage(2, 20), later]


def test_given_two_workspaces_when_listing_one_then_the_other_s_rows_never_appear(database: Database) -> None:
    workspace_a, workspace_b = ws(), ws()
    shared_name = "raw/2024/05/01/13/Perf_CL/" + "0" * 32 + ".json.gz"
    database.apply_blob(entry(workspace_a, shared_name), usage_of([usage(7, 700, computer="a-host")]))
    database.apply_blob(entry(workspace_b, shared_name), usage_of([usage(1, 10, computer="b-host")]))

    rows_b = database.list_usage(workspace_b)

    assert rows_b == [usage(1, 10, computer="b-host")]
    assert database.list_usage(workspace_a) == [usage(7, 700, computer="a-host")]
    # The same blob name in another workspace is another ledger entry.
    assert database.blob_processed(workspace_a, shared_name)
    assert database.blob_processed(workspace_b, shared_name)


def test_given_a_blob_without_usage_rows_when_applied_then_ledger_records_it(database: Database) -> None:
    workspace = ws()
    ledger = entry(workspace, records=0)

    assert database.apply_blob(ledger, usage_of([])) is True

    assert database.blob_processed(workspace, ledger.blob_name)
    assert database.list_usage(workspace) == []


def test_given_an_upsert_that_fails_when_applying_then_no_ledger_row_is_left(database: Database) -> None:
    workspace = ws()
    ledger = entry(workspace)
    # computer is NOT NULL in every dialect: the claim succeeds, then the upsert fails.
    broken = UsageRow(hour=HOUR, log_type="Perf_CL", computer=None, records=1, bytes=1)  # type: ignore[arg-type]

    with pytest.raises(Exception):  # noqa: B017 - each driver raises its own IntegrityError
        database.apply_blob(ledger, usage_of([usage(2, 20), broken]))

    assert database.blob_processed(workspace, ledger.blob_name) is False
    assert database.list_usage(workspace) == []
    # Redelivery after the failure is applied normally: the failed attempt left nothing behind.
    assert database.apply_blob(ledger, usage_of([usage(2, 20)])) is True
    assert database.list_usage(workspace) == [usage(2, 20)]


def test_given_a_log_type_longer_than_the_column_when_applying_on_postgresql_then_nothing_is_kept(
    pg_database: PostgresDatabase,
) -> None:
    db = Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string)
    try:
        db.migrate()
        workspace = ws()
        ledger = entry(workspace)

        with pytest.raises(Exception):  # noqa: B017 - pyodbc.Error (22001 string data right truncation)
            db.apply_blob(ledger, usage_of([usage(1, 1), usage(1, 1, log_type="L" * 101)]))

        assert db.blob_processed(workspace, ledger.blob_name) is False
        assert db.list_usage(workspace) == []
    finally:
        db.close()


class ClosingConnection:
    """Wraps a DB-API connection: executing the usage upsert first closes the connection under the
    open transaction, as a process dying between the two statements would."""

    def __init__(self, connection: Any, upsert_text: str) -> None:
        self.connection = connection
        self.upsert_text = upsert_text
        self.closed_mid_transaction = False

    def cursor(self) -> Any:
        outer = self
        cursor = self.connection.cursor()

        class Cursor:
            def execute(self, sql: str, *params: Any) -> Any:
                if sql == outer.upsert_text:
                    outer.closed_mid_transaction = True
                    outer.connection.close()
                return cursor.execute(sql, *params)

            def __getattr__(self, name: str) -> Any:
                return getattr(cursor, name)

        return Cursor()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


def test_given_the_connection_closes_between_claim_and_upsert_when_applying_then_no_ledger_row_is_left(
    sql_target: SqlTarget,
) -> None:
    setup = Database.open(sql_target.dialect, sql_target.connection)
    setup.migrate()
    setup.close()
    connect = Database.open(sql_target.dialect, sql_target.connection)._connect
    wrappers: list[ClosingConnection] = []

    def closing_connect() -> Any:
        wrappers.append(
            ClosingConnection(connect(), sql_module.statement(sql_target.dialect, "upsert_usage").text)
        )
        return wrappers[-1]

    failing = Database(sql_target.dialect, closing_connect)
    workspace = ws()
    ledger = entry(workspace)
    try:
        with pytest.raises(Exception):  # noqa: B017 - sqlite3.ProgrammingError / pyodbc.Error
            failing.apply_blob(ledger, usage_of([usage(2, 20)]))
    finally:
        failing.close()

    assert wrappers and wrappers[0].closed_mid_transaction
    check = Database.open(sql_target.dialect, sql_target.connection)
    try:
        assert check.blob_processed(workspace, ledger.blob_name) is False
        assert check.list_usage(workspace) == []
    finally:
        check.close()


def test_given_the_server_kills_the_session_mid_transaction_on_postgresql_then_nothing_kept_and_reconnects(
    postgres_cluster: PostgresCluster, pg_database: PostgresDatabase
) -> None:
    upsert_text = sql_module.statement(SqlDialect.POSTGRESQL, "upsert_usage").text
    connect = Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string)._connect
    killed: list[int] = []

    class KillingCursor:
        def __init__(self, cursor: Any, pid: int) -> None:
            self._cursor, self._pid = cursor, pid

        def execute(self, sql: str, *params: Any) -> Any:
            if sql == upsert_text and not killed:
                postgres_cluster.admin_execute(f"SELECT pg_terminate_backend({self._pid})")
                killed.append(self._pid)
            return self._cursor.execute(sql, *params)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cursor, name)

    class KillingConnection:
        def __init__(self, connection: Any) -> None:
            self._connection = connection
            probe = connection.cursor()
            probe.execute("SELECT pg_backend_pid()")
            self._pid = int(probe.fetchone()[0])
            connection.commit()

        def cursor(self) -> KillingCursor:
            return KillingCursor(self._connection.cursor(), self._pid)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._connection, name)

    db = Database(SqlDialect.POSTGRESQL, lambda: KillingConnection(connect()))
    try:
        db.migrate()
        workspace = ws()
        ledger = entry(workspace)

        with pytest.raises(DatabaseUnavailable):
            db.apply_blob(ledger, usage_of([usage(2, 20)]))

        assert killed
        # The same Database object reconnects on its next use; the killed transaction left nothing.
        assert db.blob_processed(workspace, ledger.blob_name) is False
        assert db.list_usage(workspace) == []
        assert db.apply_blob(ledger, usage_of([usage(2, 20)])) is True
        assert db.list_usage(workspace) == [usage(2, 20)]
    finally:
        db.close()


def test_given_the_server_kills_an_idle_session_on_postgresql_then_one_call_fails_and_the_next_reconnects(
    postgres_cluster: PostgresCluster, pg_database: PostgresDatabase
) -> None:
    """psqlODBC reports a connection found dead between transactions as HY000 "The connection has been
    lost": transient, so the connection is dropped instead of being reused (and failing) forever."""
    db = Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string)
    try:
        db.migrate()
        workspace = ws()
        db.apply_blob(entry(workspace), usage_of([usage(2, 20)]))
        postgres_cluster.admin_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{pg_database.name}' AND pid <> pg_backend_pid()"
        )

        with pytest.raises(DatabaseUnavailable):
            db.list_usage(workspace)

        assert db.list_usage(workspace) == [usage(2, 20)]
    finally:
        db.close()


# -- concurrency: two instances, two connections ----------------------------------------------


def test_given_different_blobs_for_the_same_hour_applied_at_once_on_postgresql_then_totals_add_up(
    pg_database: PostgresDatabase,
) -> None:
    databases = [Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string) for _ in range(2)]
    try:
        databases[0].migrate()
        workspace = ws()
        for _ in range(RACE_ROUNDS):
            outcomes = run_together(
                2,
                lambda i: databases[i].apply_blob(entry(workspace), usage_of([usage(1, 10)])),
            )
            assert outcomes == [True, True]
        assert databases[0].list_usage(workspace) == [usage(2 * RACE_ROUNDS, 20 * RACE_ROUNDS)]
    finally:
        for db in databases:
            db.close()


# -- the statement files of every dialect, T-SQL included --------------------------------------------


def statement_files(dialect: str) -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted((SQL_DIR / dialect).glob("*.sql"))}


def without_params_line(text: str) -> str:
    lines = text.splitlines()
    return "\n".join(lines[1:]) if lines and lines[0].lstrip().startswith("-- params:") else text


def declared_params(text: str) -> list[str] | None:
    first = text.splitlines()[0] if text else ""
    match = re.match(r"--\s*params:\s*(.*)", first)
    return [p.strip() for p in match.group(1).split(",") if p.strip()] if match else None


def bound_names_in_code() -> dict[str, set[str]]:
    """Statement name → the names the Python code binds for it, read from shared/sql/__init__.py:
    `x = statement(self.dialect, "name")` ... `x.bind({...})`, `for x, ... in ((statement(..., "a"), ...),
    ...)` ... `x.bind({...})`, and `statement(..., "name").text` executed without parameters."""
    tree = ast.parse(Path(sql_module.__file__).read_text(encoding="utf-8"))
    bound: dict[str, set[str]] = {}
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        variables: dict[str, list[str]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "statement":
                name_arg = node.args[1] if len(node.args) > 1 else None
                if isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str):
                    bound.setdefault(name_arg.value, set())
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "statement"
            ):
                name_arg = node.value.args[1]
                assert isinstance(name_arg, ast.Constant)
                variables[node.targets[0].id] = [str(name_arg.value)]
            if (
                isinstance(node, ast.For)
                and isinstance(node.target, ast.Tuple)
                and isinstance(node.target.elts[0], ast.Name)
                and isinstance(node.iter, ast.Tuple)
            ):
                names = [
                    str(item.elts[0].args[1].value)
                    for item in node.iter.elts
                    if isinstance(item, ast.Tuple)
                    and isinstance(item.elts[0], ast.Call)
                    and isinstance(item.elts[0].func, ast.Name)
                    and item.elts[0].func.id == "statement"
                    and isinstance(item.elts[0].args[1], ast.Constant)
                ]
                if names:
                    variables[node.target.elts[0].id] = names
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "bind"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in variables
                and node.args
                and isinstance(node.args[0], ast.Dict)
            ):
                keys = {k.value for k in node.args[0].keys if isinstance(k, ast.Constant)}
                for name in variables[node.func.value.id]:
                    bound[name].update(str(k) for k in keys)
    return bound


def test_given_every_dialect_folder_when_listing_statements_then_all_have_the_same_names() -> None:
    names = {dialect: set(statement_files(dialect)) for dialect in ALL_DIALECTS}

    reference = names[SqlDialect.SQLITE.value]
    assert reference
    for dialect, found in names.items():
        assert found == reference, f"{dialect}: missing {reference - found}, extra {found - reference}"


@pytest.mark.parametrize("name", sorted(statement_files(SqlDialect.TSQL.value)))
def test_given_a_tsql_file_when_parsed_with_sqlglot_then_every_batch_parses(name: str) -> None:
    text = statement_files(SqlDialect.TSQL.value)[name]

    statements = batches(without_params_line(text))

    assert statements
    for batch in statements:
        if uncommented(batch) == EXECUTE_AS_READER:
            continue  # sqlglot has no grammar for EXECUTE AS; its text is checked in test_rls.py
        parsed = sqlglot.parse_one(batch, read="tsql")
        # exp.Command is sqlglot's "kept as raw text" fallback: not a real parse. sqlglot has no grammar
        # for security policies and database principals; those alone may stay opaque (their text is
        # checked in tests/integration/test_rls.py).
        for command in [parsed, *parsed.find_all(exp.Command)]:
            if isinstance(command, exp.Command):
                assert is_opaque_tsql_allowed(command), f"{name}: not understood by sqlglot: {batch[:80]}"


def is_opaque_tsql_allowed(command: exp.Command) -> bool:
    statement_text = f"{command.this} {str(command.expression).strip()}".upper()
    return any(re.fullmatch(allowed, statement_text, flags=re.DOTALL) for allowed in OPAQUE_TSQL)


OPAQUE_TSQL = (
    r"(CREATE|DROP) SECURITY POLICY .*",
    r"CREATE ROLE \w+",
    r"CREATE USER \w+ WITHOUT LOGIN",
    r"ALTER ROLE \w+ ADD MEMBER \w+",
    r"GRANT IMPERSONATE ON USER::\w+ TO \w+",
)


def test_given_the_code_when_it_binds_statements_then_every_dialect_has_them() -> None:
    used = set(bound_names_in_code())

    assert {"claim_blob", "upsert_usage", "list_usage", "migrations_table"} <= used
    for dialect in ALL_DIALECTS:
        assert used <= set(statement_files(dialect)), (
            f"{dialect} lacks {used - set(statement_files(dialect))}"
        )


@pytest.mark.parametrize("dialect", ALL_DIALECTS)
def test_given_each_statement_when_its_params_line_is_read_then_names_are_bound_and_match_placeholders(
    dialect: str,
) -> None:
    bound = bound_names_in_code()

    for name, text in statement_files(dialect).items():
        if re.fullmatch(r"V\d{4}__\w+", name):
            assert "?" not in text, f"{dialect}/{name}: migrations take no parameters"
            continue
        params = declared_params(text) or []
        assert set(params) <= bound.get(name, set()), (
            f"{dialect}/{name}.sql declares {params}, the code binds {sorted(bound.get(name, set()))}"
        )
        placeholders = without_params_line(text).count("?")
        assert placeholders == len(params), f"{dialect}/{name}.sql: {placeholders} '?' for {params}"
