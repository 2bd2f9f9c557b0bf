"""Row-level security keyed by workspace: on PostgreSQL with a real reader login (a LOGIN role in the
sluice_reader group, connected through pyodbc like any client), the reader session API on PostgreSQL
and SQLite, and the T-SQL security policy, which cannot run here, checked in its text."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

import shared.sql as sql_module
from shared.aggregate import Aggregates, EventRow, PerfRow, SyslogRow, UsageRow
from shared.errors import DatabaseError, DatabaseUnavailable, InvalidCustomerId
from shared.processing import LedgerEntry
from shared.settings import SqlDialect
from shared.sql import Database
from tests.support.aggregates import sorted_aggregates
from tests.support.postgres import PostgresCluster, PostgresDatabase, odbc_connection_string

pytestmark = pytest.mark.integration

SQL_DIR = Path(sql_module.__file__).parent
AGGREGATE_TABLES = ("usage_hourly", "perf_hourly", "events_hourly", "syslog_hourly")
READER_GROUP = "sluice_reader"
HOUR = datetime(2024, 5, 1, 13, tzinfo=UTC)
SETTING = "sluice.workspace_id"


def ws() -> str:
    return str(uuid.uuid4())


def entry(workspace_id: str) -> LedgerEntry:
    return LedgerEntry(
        workspace_id=workspace_id,
        blob_name=f"raw/2024/05/01/13/Syslog/{uuid.uuid4().hex}.json.gz",
        etag='"0x8DC0000000000"',
        sha256="ef" * 32,
        record_count=3,
    )


def aggregates_for(computer: str, scale: int) -> Aggregates:
    return Aggregates(
        usage=[UsageRow(HOUR, "Syslog", computer, 3 * scale, 300 * scale)],
        perf=[
            PerfRow(HOUR, computer, "Processor", "% Processor Time", "_Total", scale, 50.0, 10.0, 40.0),
            PerfRow(HOUR, computer, "Memory", "Available MBytes", "", scale, 8.0, 8.0, 8.0),
        ],
        events=[EventRow(HOUR, "Event", computer, 7036, "Information", 2 * scale)],
        syslog=[
            SyslogRow(HOUR, computer, "auth", "err", scale),
            SyslogRow(HOUR, computer, "kern", "crit", 1),
        ],
    )


def listed(reads: Any, *workspace: str) -> Aggregates:
    """Everything a Database (given a workspace) or a ReaderSession (bound to one) lists."""
    return Aggregates(
        usage=reads.list_usage(*workspace),
        perf=reads.list_perf(*workspace),
        events=reads.list_events(*workspace),
        syslog=reads.list_syslog(*workspace),
    )


# -- PostgreSQL: a real reader login -----------------------------------------------------------------


@dataclass
class Login:
    name: str
    connection_string: str


@dataclass
class RlsDatabase:
    cluster: PostgresCluster
    database: PostgresDatabase
    owner: Database  # the processor: the tables' owner
    workspace_a: str
    workspace_b: str


def ensure_reader_group(cluster: PostgresCluster) -> None:
    """What an administrator does once per server when the app role may not create roles (the tests'
    `sluice` role is NOCREATEROLE): the migration then only grants to the group."""
    cluster.admin_execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_reader') THEN "
        "CREATE ROLE sluice_reader NOLOGIN; END IF; END $$"
    )


@pytest.fixture
def rls(postgres_cluster: PostgresCluster, pg_database: PostgresDatabase) -> Iterator[RlsDatabase]:
    ensure_reader_group(postgres_cluster)
    owner = Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string)
    try:
        owner.migrate()
        workspace_a, workspace_b = ws(), ws()
        assert owner.apply_blob(entry(workspace_a), aggregates_for("a-host", 1))
        assert owner.apply_blob(entry(workspace_b), aggregates_for("b-host", 5))
        yield RlsDatabase(postgres_cluster, pg_database, owner, workspace_a, workspace_b)
    finally:
        owner.close()


def make_login(rls: RlsDatabase, *, grants: str = "") -> Iterator[Login]:
    name = f"reader_{uuid.uuid4().hex[:12]}"
    password = secrets.token_hex(16)
    rls.cluster.admin_execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE {READER_GROUP}")
    if grants:
        owner_connection = connect(rls.database.connection_string)
        try:
            owner_connection.cursor().execute(grants.format(role=name))
        finally:
            owner_connection.close()
    try:
        yield Login(
            name,
            odbc_connection_string(
                port=rls.cluster.port, database=rls.database.name, user=name, password=password
            ),
        )
    finally:
        rls.cluster.admin_execute(f"DROP OWNED BY {name}", database=rls.database.name)
        rls.cluster.admin_execute(f"DROP ROLE {name}")


@pytest.fixture
def reader(rls: RlsDatabase) -> Iterator[Login]:
    """A login whose only privileges are those of sluice_reader."""
    yield from make_login(rls)


@pytest.fixture
def writer(rls: RlsDatabase) -> Iterator[Login]:
    """A reader that was also granted INSERT (by the owner): what the policy's WITH CHECK is for."""
    tables = ", ".join(AGGREGATE_TABLES)
    yield from make_login(rls, grants=f"GRANT INSERT ON {tables} TO {{role}}")


def connect(connection_string: str) -> Any:
    import pyodbc

    return pyodbc.connect(connection_string, autocommit=True)


def bind(connection: Any, workspace_id: str) -> None:
    connection.cursor().execute(f"SELECT set_config('{SETTING}', ?, false)", workspace_id)


def rows(connection: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in connection.cursor().execute(sql, *params).fetchall()]


def owner_counts(rls: RlsDatabase, table: str) -> dict[str, int]:
    found = rls.cluster.admin_execute(
        f"SELECT workspace_id, count(*) FROM {table} GROUP BY workspace_id", database=rls.database.name
    )
    return {workspace: int(n) for workspace, n in found}


def test_given_a_reader_login_bound_to_a_when_reading_every_table_then_all_of_a_and_none_of_b(
    rls: RlsDatabase, reader: Login
) -> None:
    connection = connect(reader.connection_string)
    try:
        bind(connection, rls.workspace_a)
        for table in AGGREGATE_TABLES:
            expected = owner_counts(rls, table)
            assert set(expected) == {rls.workspace_a, rls.workspace_b}, "both workspaces have rows"

            seen = rows(connection, f"SELECT workspace_id, count(*) FROM {table} GROUP BY workspace_id")

            assert seen == [(rls.workspace_a, expected[rls.workspace_a])], table
    finally:
        connection.close()


def test_given_a_reader_bound_to_a_when_its_where_clause_names_b_then_it_still_reads_nothing_of_b(
    rls: RlsDatabase, reader: Login
) -> None:
    connection = connect(reader.connection_string)
    try:
        bind(connection, rls.workspace_a)
        for table in AGGREGATE_TABLES:
            assert rows(connection, f"SELECT * FROM {table} WHERE workspace_id = ?", rls.workspace_b) == []
            assert rows(
                connection, f"SELECT count(*) FROM {table} WHERE workspace_id <> ?", rls.workspace_a
            ) == [(0,)]
            assert (
                rows(connection, f"SELECT count(*) FROM {table} WHERE true OR workspace_id = ?", "x")[0][0]
                > 0
            )
    finally:
        connection.close()


def test_given_a_reader_without_a_workspace_setting_when_reading_then_it_sees_no_row(
    rls: RlsDatabase, reader: Login
) -> None:
    connection = connect(reader.connection_string)
    try:
        for table in AGGREGATE_TABLES:
            assert rows(connection, f"SELECT count(*) FROM {table}") == [(0,)]
        bind(connection, "")  # set, then emptied: still nothing
        for table in AGGREGATE_TABLES:
            assert rows(connection, f"SELECT count(*) FROM {table}") == [(0,)]
    finally:
        connection.close()


def test_given_a_reader_bound_to_a_when_inserting_a_row_for_b_then_it_is_refused(
    rls: RlsDatabase, reader: Login
) -> None:
    import pyodbc

    connection = connect(reader.connection_string)
    try:
        bind(connection, rls.workspace_a)
        for workspace in (rls.workspace_b, rls.workspace_a):
            with pytest.raises(pyodbc.Error, match="permission denied"):
                connection.cursor().execute(
                    "INSERT INTO usage_hourly (workspace_id, hour, log_type, computer, records, bytes) "
                    "VALUES (?, '2024-05-01 13:00:00', 'Syslog', 'x', 1, 1)",
                    workspace,
                )
        for statement_text in (
            "UPDATE syslog_hourly SET messages = messages + 1",
            "DELETE FROM perf_hourly",
            "INSERT INTO events_hourly SELECT * FROM events_hourly",
        ):
            with pytest.raises(pyodbc.Error, match="permission denied"):
                connection.cursor().execute(statement_text)
        with pytest.raises(pyodbc.Error, match="permission denied"):
            connection.cursor().execute("SELECT * FROM processed_blobs")
    finally:
        connection.close()
    assert owner_counts(rls, "usage_hourly") == {rls.workspace_a: 1, rls.workspace_b: 1}


def test_given_a_login_granted_insert_and_bound_to_a_when_inserting_for_b_then_the_policy_refuses_it(
    rls: RlsDatabase, writer: Login
) -> None:
    """Privileges aside, the policy's WITH CHECK refuses a row of another workspace."""
    import pyodbc

    insert = (
        "INSERT INTO syslog_hourly (workspace_id, hour, computer, facility, severity, messages) "
        "VALUES (?, '2024-05-01 15:00:00', 'w-host', 'user', 'notice', 1)"
    )
    connection = connect(writer.connection_string)
    try:
        bind(connection, rls.workspace_a)
        with pytest.raises(pyodbc.Error, match="row-level security"):
            connection.cursor().execute(insert, rls.workspace_b)
        connection.cursor().execute(insert, rls.workspace_a)
    finally:
        connection.close()
    assert owner_counts(rls, "syslog_hourly") == {rls.workspace_a: 3, rls.workspace_b: 2}


def test_given_the_owner_when_reading_then_row_level_security_does_not_apply_to_the_processor(
    rls: RlsDatabase,
) -> None:
    """The processor is the tables' owner and the tables are not FORCEd: it sees and writes every
    workspace (each of its queries names its workspace instead)."""
    connection = connect(rls.database.connection_string)
    try:
        for table in AGGREGATE_TABLES:
            assert rows(connection, f"SELECT count(DISTINCT workspace_id) FROM {table}") == [(2,)]
    finally:
        connection.close()
    assert listed(rls.owner, rls.workspace_b) == sorted_aggregates(aggregates_for("b-host", 5))


def test_given_the_migrated_schema_then_every_table_with_a_workspace_column_but_the_ledger_has_rls(
    rls: RlsDatabase,
) -> None:
    tables = rls.cluster.admin_execute(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
        "  (SELECT count(*) FROM pg_policies p WHERE p.tablename = c.relname) "
        "FROM pg_class c JOIN information_schema.columns col "
        "  ON col.table_name = c.relname AND col.column_name = 'workspace_id' "
        "  AND col.table_schema = 'public' "
        "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace ORDER BY c.relname",
        database=rls.database.name,
    )
    found = {name: (enabled, forced, policies) for name, enabled, forced, policies in tables}

    assert set(found) == {*AGGREGATE_TABLES, "processed_blobs"}
    for table in AGGREGATE_TABLES:
        assert found[table] == (True, False, 1), table
    assert found["processed_blobs"][0] is False  # the ledger is never granted to readers
    grants = rls.cluster.admin_execute(
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
        f"WHERE grantee = '{READER_GROUP}' ORDER BY table_name",
        database=rls.database.name,
    )
    assert sorted(tuple(g) for g in grants) == sorted((t, "SELECT") for t in AGGREGATE_TABLES)


def test_given_a_reader_session_for_a_when_listing_then_exactly_a_s_rows_of_every_table(
    rls: RlsDatabase, reader: Login
) -> None:
    database = Database.open(SqlDialect.POSTGRESQL, reader.connection_string)
    try:
        with database.reader(rls.workspace_a) as session_a, database.reader(rls.workspace_b) as session_b:
            assert listed(session_a) == listed(rls.owner, rls.workspace_a)
            assert listed(session_b) == listed(rls.owner, rls.workspace_b)
            assert listed(session_a) == sorted_aggregates(aggregates_for("a-host", 1))
        # The reader login alone, without the session's binding, sees nothing: RLS, not the WHERE clause.
        assert database.list_usage(rls.workspace_a) == []
    finally:
        database.close()


def test_given_a_reader_session_when_its_connection_is_killed_then_the_next_connection_is_bound_again(
    rls: RlsDatabase, reader: Login
) -> None:
    database = Database.open(SqlDialect.POSTGRESQL, reader.connection_string)
    with database.reader(rls.workspace_a) as session:
        expected = listed(session)
        assert expected.usage
        rls.cluster.admin_execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{reader.name}'"
        )

        with pytest.raises(DatabaseUnavailable):
            session.list_usage()

        assert listed(session) == expected


def test_given_the_owner_s_database_when_opening_a_reader_session_on_postgresql_then_it_is_refused(
    rls: RlsDatabase,
) -> None:
    """A reader session never runs as the owner (to whom no policy applies): SET ROLE sluice_reader is
    refused to a login that is not in the group, and that is not worth retrying."""
    with rls.owner.reader(rls.workspace_a) as session, pytest.raises(DatabaseError, match="sluice_reader"):
        session.list_usage()


def test_given_a_reader_connection_running_its_own_sql_then_it_can_re_point_the_setting(
    rls: RlsDatabase, reader: Login
) -> None:
    """The threat model, stated as a test: in PostgreSQL the workspace is an ordinary session setting,
    so RLS guards against the service's query mistakes, not against a client running arbitrary SQL on a
    reader connection. Reader connections therefore run only ReaderSession's fixed statements (Azure
    SQL's read-only SESSION_CONTEXT closes this gap there)."""
    connection = connect(reader.connection_string)
    try:
        bind(connection, rls.workspace_a)
        bind(connection, rls.workspace_b)
        assert rows(connection, "SELECT DISTINCT workspace_id FROM usage_hourly") == [(rls.workspace_b,)]
    finally:
        connection.close()


# -- SQLite: no RLS, the session still scopes every query ------------------------------------------


def test_given_sqlite_when_reading_through_a_reader_session_then_only_its_workspace_is_listed(
    tmp_path: Path,
) -> None:
    database = Database.open(SqlDialect.SQLITE, str(tmp_path / "sluice.db"))
    try:
        database.migrate()
        workspace_a, workspace_b = ws(), ws()
        database.apply_blob(entry(workspace_a), aggregates_for("a-host", 1))
        database.apply_blob(entry(workspace_b), aggregates_for("b-host", 2))

        with database.reader(workspace_a.upper()) as session:
            assert session.workspace_id == workspace_a  # the canonical form
            assert listed(session) == sorted_aggregates(aggregates_for("a-host", 1))
        # The processor's connection is its own: closing the session leaves it usable.
        assert listed(database, workspace_b) == sorted_aggregates(aggregates_for("b-host", 2))
    finally:
        database.close()


@pytest.mark.parametrize("workspace", ["", "%", "' OR 1=1 --", "not-a-guid"])
def test_given_a_workspace_that_is_not_a_guid_when_opening_a_reader_session_then_it_is_refused(
    tmp_path: Path, workspace: str
) -> None:
    database = Database.open(SqlDialect.SQLITE, str(tmp_path / "sluice.db"))
    with pytest.raises(InvalidCustomerId):
        database.reader(workspace)


# -- the migrations' text: every dialect, T-SQL included ---------------------------------------------


def sql_file(dialect: SqlDialect, name: str) -> str:
    return (SQL_DIR / dialect.value / f"{name}.sql").read_text(encoding="utf-8")


def batches(text: str) -> list[str]:
    return [b.strip() for b in re.split(r"^\s*GO\s*$", text, flags=re.MULTILINE | re.IGNORECASE) if b.strip()]


def created_tables(dialect: SqlDialect) -> set[str]:
    found: set[str] = set()
    for migration in sql_module.migrations(dialect):
        for batch in migration.batches:
            found.update(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(?:dbo\.)?(\w+)", batch))
    return found


@pytest.mark.parametrize("dialect", list(SqlDialect))
def test_given_each_dialect_then_the_aggregate_tables_exist_and_rls_is_migration_3(
    dialect: SqlDialect,
) -> None:
    names = [m.name for m in sql_module.migrations(dialect)]

    assert names[:3] == [
        "V0001__usage_and_ledger.sql",
        "V0002__record_aggregates.sql",
        "V0003__row_level_security.sql",
    ]
    assert created_tables(dialect) == {*AGGREGATE_TABLES, "processed_blobs"}


def test_given_the_postgresql_rls_migration_then_each_aggregate_table_has_its_policy_and_none_is_forced() -> (
    None
):
    text = sql_file(SqlDialect.POSTGRESQL, "V0003__row_level_security")

    for table in AGGREGATE_TABLES:
        assert f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY" in text
        policy = re.search(
            rf"CREATE POLICY workspace_isolation ON {table}\s+USING \((.*?)\)\s+WITH CHECK \((.*?)\)\n", text
        )
        assert policy is not None, table
        assert (
            policy.group(1)
            == policy.group(2)
            == "workspace_id = current_setting('sluice.workspace_id', true)"
        )
    assert "FORCE ROW LEVEL SECURITY" not in text
    assert "GRANT SELECT ON usage_hourly, perf_hourly, events_hourly, syslog_hourly TO sluice_reader" in text


def test_given_the_tsql_rls_migration_then_the_policy_filters_and_blocks_every_aggregate_table() -> None:
    text = sql_file(SqlDialect.TSQL, "V0003__row_level_security")
    parts = batches(text)
    policy = next(b for b in parts if b.startswith("CREATE SECURITY POLICY"))

    assert policy.startswith("CREATE SECURITY POLICY dbo.workspace_isolation")
    assert re.search(r"WITH \(STATE = ON, SCHEMABINDING = ON\)$", policy)
    for table in AGGREGATE_TABLES:
        predicate = rf"dbo\.fn_workspace_predicate\(workspace_id\) ON dbo\.{table}"
        assert re.search(rf"ADD FILTER PREDICATE {predicate}(,|\n)", policy), table
        assert re.search(rf"ADD BLOCK PREDICATE {predicate} AFTER INSERT", policy), table
        assert re.search(rf"ADD BLOCK PREDICATE {predicate} AFTER UPDATE", policy), table
        assert f"GRANT SELECT ON dbo.{table} TO sluice_reader" in parts
    # Idempotent: the policy is dropped if present before the function is (re)defined and it is created.
    drop = next(i for i, b in enumerate(parts) if b.endswith("DROP SECURITY POLICY dbo.workspace_isolation"))
    assert "IF OBJECT_ID(N'dbo.workspace_isolation', N'SP') IS NOT NULL" in parts[drop]
    function = next(i for i, b in enumerate(parts) if "FUNCTION dbo.fn_workspace_predicate" in b)
    assert drop < function < parts.index(policy)


def test_given_the_tsql_predicate_function_then_it_parses_and_compares_the_read_only_session_context() -> (
    None
):
    text = sql_file(SqlDialect.TSQL, "V0003__row_level_security")
    function = next(b for b in batches(text) if "FUNCTION dbo.fn_workspace_predicate" in b)

    parsed = sqlglot.parse_one(function, read="tsql")

    assert isinstance(parsed, exp.Create) and parsed.find(exp.Command) is None
    body = parsed.sql(dialect="tsql")
    assert "WITH SCHEMABINDING" in body
    assert "@workspace_id = CAST(SESSION_CONTEXT(N'workspace_id') AS VARCHAR(36))" in body
    assert "IS_ROLEMEMBER(N'sluice_processor') = 1" in body
    assert "processor'" not in body.replace("sluice_processor'", ""), "no exemption by session flag"
    bind_reader = sql_module.statement(SqlDialect.TSQL, "bind_reader")
    call = sqlglot.parse_one(bind_reader.text.split("\n", 3)[-1], read="tsql")
    assert isinstance(call, exp.Execute)
    assert bind_reader.params == ("workspace_id",)
    assert "@key = N'workspace_id', @value = ?, @read_only = 1" in bind_reader.text


def test_given_the_tsql_files_then_only_roles_and_the_security_policy_are_opaque_to_sqlglot() -> None:
    opaque = []
    for path in sorted((SQL_DIR / SqlDialect.TSQL.value).glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        if text.startswith("-- params:"):
            text = text.split("\n", 1)[1]
        for batch in batches(text):
            parsed = sqlglot.parse_one(batch, read="tsql")
            for command in [parsed, *parsed.find_all(exp.Command)]:
                if isinstance(command, exp.Command):
                    opaque.append(f"{command.this}{command.expression}".split("\n")[0])

    assert sorted(set(opaque)) == [
        "CREATE ROLE sluice_processor",
        "CREATE ROLE sluice_reader",
        "CREATE SECURITY POLICY dbo.workspace_isolation",
        "DROP SECURITY POLICY dbo.workspace_isolation",
    ]
