"""Row-level security keyed by workspace: on PostgreSQL with a real reader login (a LOGIN role in the
sluice_reader group, connected through pyodbc like any client), the reader session API on PostgreSQL
and SQLite, and the T-SQL security policy, which cannot run here, checked in its text."""

from __future__ import annotations

import hashlib
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
from shared.sql import Database, batches
from tests.support.aggregates import sorted_aggregates
from tests.support.postgres import PostgresCluster, PostgresDatabase, odbc_connection_string
from tests.support.reader_sessions import EXECUTE_AS_READER, bind, connect, uncommented

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


# -- PostgreSQL: the app's login, dropped to sluice_reader by a signed binding -----------------------


@dataclass
class Login:
    name: str
    connection_string: str


@dataclass
class RlsDatabase:
    cluster: PostgresCluster
    database: PostgresDatabase
    owner: Database  # the processor: the tables' owner, whose login reader sessions also use
    workspace_a: str
    workspace_b: str


@pytest.fixture
def rls(postgres_cluster: PostgresCluster, pg_database: PostgresDatabase) -> Iterator[RlsDatabase]:
    owner = Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string)
    try:
        owner.migrate()
        workspace_a, workspace_b = ws(), ws()
        assert owner.apply_blob(entry(workspace_a), aggregates_for("a-host", 1))
        assert owner.apply_blob(entry(workspace_b), aggregates_for("b-host", 5))
        yield RlsDatabase(postgres_cluster, pg_database, owner, workspace_a, workspace_b)
    finally:
        owner.close()


def make_login(rls: RlsDatabase, *, groups: str = "") -> Iterator[Login]:
    """A login of its own, in the given groups: what someone holding only those rights can do."""
    name = f"login_{uuid.uuid4().hex[:12]}"
    password = secrets.token_hex(16)
    membership = f" IN ROLE {groups}" if groups else ""
    rls.cluster.admin_execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'{membership}")
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
def app_connection(rls: RlsDatabase) -> Iterator[Any]:
    """A connection of the app's login, as a reader session opens it."""
    connection = connect(rls.database.connection_string)
    try:
        yield connection
    finally:
        connection.close()


def rows(connection: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in connection.cursor().execute(sql, *params).fetchall()]


def set_setting(connection: Any, name: str, value: str) -> None:
    connection.cursor().execute("SELECT set_config(?, ?, false)", name, value)


def total_rows(connection: Any) -> int:
    return sum(rows(connection, f"SELECT count(*) FROM {table}")[0][0] for table in AGGREGATE_TABLES)


def owner_counts(rls: RlsDatabase, table: str) -> dict[str, int]:
    found = rls.cluster.admin_execute(
        f"SELECT workspace_id, count(*) FROM {table} GROUP BY workspace_id", database=rls.database.name
    )
    return {workspace: int(n) for workspace, n in found}


def test_given_a_connection_bound_to_a_when_reading_every_table_then_all_of_a_and_none_of_b(
    rls: RlsDatabase, app_connection: Any
) -> None:
    bind(app_connection, rls.workspace_a)

    assert rows(app_connection, "SELECT current_user") == [(READER_GROUP,)]
    for table in AGGREGATE_TABLES:
        expected = owner_counts(rls, table)
        assert set(expected) == {rls.workspace_a, rls.workspace_b}, "both workspaces have rows"

        seen = rows(app_connection, f"SELECT workspace_id, count(*) FROM {table} GROUP BY workspace_id")

        assert seen == [(rls.workspace_a, expected[rls.workspace_a])], table


def test_given_a_connection_bound_to_a_when_its_where_clause_names_b_then_it_still_reads_nothing_of_b(
    rls: RlsDatabase, app_connection: Any
) -> None:
    bind(app_connection, rls.workspace_a)
    for table in AGGREGATE_TABLES:
        assert rows(app_connection, f"SELECT * FROM {table} WHERE workspace_id = ?", rls.workspace_b) == []
        assert rows(
            app_connection, f"SELECT count(*) FROM {table} WHERE workspace_id <> ?", rls.workspace_a
        ) == [(0,)]
        assert (
            rows(app_connection, f"SELECT count(*) FROM {table} WHERE true OR workspace_id = ?", "x")[0][0]
            > 0
        )


def test_given_a_bound_connection_when_the_workspace_setting_is_forged_then_it_sees_no_row_at_all(
    rls: RlsDatabase, app_connection: Any
) -> None:
    """Re-pointing the setting, or copying A's proof beside B, or making one up: the proof no longer
    matches, so the policies admit nothing, neither B's rows nor A's."""
    bind(app_connection, rls.workspace_a)
    proof_of_a = rows(app_connection, "SELECT current_setting('sluice.workspace_proof')")[0][0]
    assert total_rows(app_connection) > 0

    set_setting(app_connection, SETTING, rls.workspace_b)
    assert total_rows(app_connection) == 0
    for forged in (proof_of_a, "", "0" * 64, proof_of_a.upper()):
        set_setting(app_connection, "sluice.workspace_proof", forged)
        assert total_rows(app_connection) == 0, forged


def test_given_a_temporary_table_standing_in_for_the_key_when_forging_a_proof_then_still_no_row(
    rls: RlsDatabase, app_connection: Any
) -> None:
    """Any role may create a temporary table, and an unqualified name finds the session's own first
    unless the search path puts pg_temp last: the proof functions pin theirs."""
    bind(app_connection, rls.workspace_a)
    app_connection.cursor().execute(
        "CREATE TEMP TABLE reader_binding_key (singleton boolean, key bytea); "
        "INSERT INTO reader_binding_key VALUES (true, '\\x00')"
    )
    key = b"\x00"
    forged = hashlib.sha256(key + hashlib.sha256(key + rls.workspace_b.encode()).digest()).hexdigest()

    set_setting(app_connection, SETTING, rls.workspace_b)
    set_setting(app_connection, "sluice.workspace_proof", forged)

    assert total_rows(app_connection) == 0


def test_given_a_bound_connection_when_it_reaches_for_the_key_or_the_binding_functions_then_refused(
    rls: RlsDatabase, app_connection: Any
) -> None:
    import pyodbc

    bind(app_connection, rls.workspace_a)
    for attempt in (
        "SELECT key FROM reader_binding_key",
        f"SELECT sluice_workspace_proof('{rls.workspace_b}')",
        f"SELECT sluice_bind_reader('{rls.workspace_b}')",
    ):
        with pytest.raises(pyodbc.Error, match="permission denied"):
            app_connection.cursor().execute(attempt)
    assert rows(app_connection, "SELECT current_setting('sluice.workspace_id')") == [(rls.workspace_a,)]


def test_given_a_login_only_in_sluice_reader_when_it_binds_itself_then_refused_and_forging_shows_nothing(
    rls: RlsDatabase,
) -> None:
    """A login holding exactly the reader group's rights: it cannot call the binding, and the settings
    it can write itself are worth nothing without the proof."""
    import pyodbc

    for login in make_login(rls, groups=READER_GROUP):
        connection = connect(login.connection_string)
        try:
            with pytest.raises(pyodbc.Error, match="permission denied"):
                bind(connection, rls.workspace_b)
            assert total_rows(connection) == 0
            set_setting(connection, SETTING, rls.workspace_b)
            set_setting(connection, "sluice.workspace_proof", "0" * 64)
            assert total_rows(connection) == 0
        finally:
            connection.close()


def test_given_a_connection_without_a_binding_when_reading_as_sluice_reader_then_it_sees_no_row(
    rls: RlsDatabase, app_connection: Any
) -> None:
    app_connection.cursor().execute("SET ROLE sluice_reader")
    assert total_rows(app_connection) == 0
    set_setting(app_connection, SETTING, rls.workspace_a)  # a workspace without its proof
    assert total_rows(app_connection) == 0


def test_given_a_connection_bound_to_a_when_writing_then_it_is_refused(
    rls: RlsDatabase, app_connection: Any
) -> None:
    import pyodbc

    bind(app_connection, rls.workspace_a)
    for workspace in (rls.workspace_b, rls.workspace_a):
        with pytest.raises(pyodbc.Error, match="permission denied"):
            app_connection.cursor().execute(
                "INSERT INTO usage_hourly (workspace_id, hour, log_type, computer, records, bytes) "
                "VALUES (?, '2024-05-01 13:00:00', 'Syslog', 'x', 1, 1)",
                workspace,
            )
    for statement_text in (
        "UPDATE syslog_hourly SET messages = messages + 1",
        "DELETE FROM perf_hourly",
        "INSERT INTO events_hourly SELECT * FROM events_hourly",
        "SELECT * FROM processed_blobs",
    ):
        with pytest.raises(pyodbc.Error, match="permission denied"):
            app_connection.cursor().execute(statement_text)
    assert owner_counts(rls, "usage_hourly") == {rls.workspace_a: 1, rls.workspace_b: 1}


def test_given_sluice_reader_granted_insert_and_bound_to_a_when_inserting_for_b_then_the_policy_refuses(
    rls: RlsDatabase, app_connection: Any
) -> None:
    """Privileges aside, the policy's WITH CHECK refuses a row of another workspace."""
    import pyodbc

    app_connection.cursor().execute(f"GRANT INSERT ON syslog_hourly TO {READER_GROUP}")  # this database only
    insert = (
        "INSERT INTO syslog_hourly (workspace_id, hour, computer, facility, severity, messages) "
        "VALUES (?, '2024-05-01 15:00:00', 'w-host', 'user', 'notice', 1)"
    )
    bind(app_connection, rls.workspace_a)
    with pytest.raises(pyodbc.Error, match="row-level security"):
        app_connection.cursor().execute(insert, rls.workspace_b)
    app_connection.cursor().execute(insert, rls.workspace_a)

    assert owner_counts(rls, "syslog_hourly") == {rls.workspace_a: 3, rls.workspace_b: 2}


def test_given_the_owner_when_reading_then_row_level_security_does_not_apply_to_the_processor(
    rls: RlsDatabase, app_connection: Any
) -> None:
    """The processor is the tables' owner and the tables are not FORCEd: it sees and writes every
    workspace (each of its queries names its workspace instead)."""
    for table in AGGREGATE_TABLES:
        assert rows(app_connection, f"SELECT count(DISTINCT workspace_id) FROM {table}") == [(2,)]
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
        f"WHERE grantee IN ('{READER_GROUP}', 'PUBLIC') AND table_schema = 'public' ORDER BY table_name",
        database=rls.database.name,
    )
    assert sorted(tuple(g) for g in grants) == sorted((t, "SELECT") for t in AGGREGATE_TABLES)


def test_given_a_reader_session_for_a_when_listing_then_exactly_a_s_rows_of_every_table(
    rls: RlsDatabase,
) -> None:
    with rls.owner.reader(rls.workspace_a) as session_a, rls.owner.reader(rls.workspace_b) as session_b:
        assert listed(session_a) == listed(rls.owner, rls.workspace_a)
        assert listed(session_b) == listed(rls.owner, rls.workspace_b)
        assert listed(session_a) == sorted_aggregates(aggregates_for("a-host", 1))
    # The processor's own connection is untouched by its reader sessions.
    assert listed(rls.owner, rls.workspace_b) == sorted_aggregates(aggregates_for("b-host", 5))


def test_given_a_reader_session_when_its_connection_is_killed_then_the_next_connection_is_bound_again(
    rls: RlsDatabase,
) -> None:
    with rls.owner.reader(rls.workspace_a) as session:
        expected = listed(session)
        assert expected.usage
        rls.cluster.admin_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{rls.database.name}' AND pid <> pg_backend_pid()"
        )

        with pytest.raises(DatabaseUnavailable):
            session.list_usage()

        assert listed(session) == expected


def test_given_a_login_outside_sluice_reader_when_opening_a_reader_session_then_it_is_refused(
    rls: RlsDatabase,
) -> None:
    """A reader session never runs with more than sluice_reader's rights: a login that may not bind
    (nor SET ROLE to the group) is refused, and that is not worth retrying."""
    for login in make_login(rls):
        database = Database.open(SqlDialect.POSTGRESQL, login.connection_string)
        try:
            with (
                database.reader(rls.workspace_a) as session,
                pytest.raises(DatabaseError, match="sluice_bind"),
            ):
                session.list_usage()
        finally:
            database.close()


def test_given_a_reader_connection_running_its_own_sql_then_reset_role_returns_to_the_login(
    rls: RlsDatabase, app_connection: Any
) -> None:
    """PostgreSQL's limit, stated as a test: a session may RESET ROLE to its login, the owner, whom no
    policy filters. Reader connections therefore run only ReaderSession's fixed statements; Azure SQL's
    EXECUTE AS ... WITH NO REVERT closes this there."""
    bind(app_connection, rls.workspace_a)
    app_connection.cursor().execute("RESET ROLE")

    assert rows(app_connection, "SELECT count(DISTINCT workspace_id) FROM usage_hourly") == [(2,)]


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
    own_tables = {SqlDialect.POSTGRESQL: {"reader_binding_key"}}.get(dialect, set())
    assert created_tables(dialect) == {*AGGREGATE_TABLES, "processed_blobs", *own_tables}


def test_given_the_postgresql_rls_migrations_then_each_aggregate_table_has_its_signed_policy_unforced() -> (
    None
):
    enabling = sql_file(SqlDialect.POSTGRESQL, "V0003__row_level_security")
    signed = sql_file(SqlDialect.POSTGRESQL, "V0004__reader_sessions")

    for table in AGGREGATE_TABLES:
        assert f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY" in enabling
        policy = re.search(
            rf"CREATE POLICY workspace_isolation ON {table}\s+USING \((.*?)\)\s+WITH CHECK \((.*?)\)\n",
            signed,
        )
        assert policy is not None, table
        assert policy.group(1) == policy.group(2) == "workspace_id = (SELECT sluice_bound_workspace())"
    assert "FORCE ROW LEVEL SECURITY" not in enabling + signed
    assert (
        "GRANT SELECT ON usage_hourly, perf_hourly, events_hourly, syslog_hourly TO sluice_reader" in enabling
    )
    for function in ("sluice_workspace_proof(text)", "sluice_bind_reader(text)"):
        assert f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC" in signed


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


def test_given_the_tsql_reader_binding_then_read_only_context_then_the_reader_user_without_revert() -> None:
    """The session context first (with the parameter), then, as a batch without placeholders (sent ad
    hoc: NO REVERT is refused inside sp_executesql), the switch to V0004's user for good."""
    bind_reader = sql_module.statement(SqlDialect.TSQL, "bind_reader")
    context, switch = (uncommented(batch) for batch in batches(bind_reader.text))

    assert isinstance(sqlglot.parse_one(context, read="tsql"), exp.Execute)
    assert bind_reader.params == ("workspace_id",)
    assert "@key = N'workspace_id', @value = ?, @read_only = 1" in context
    assert switch == EXECUTE_AS_READER and "?" not in bind_reader.text.split("\nGO\n")[1]
    user = batches(sql_file(SqlDialect.TSQL, "V0004__reader_sessions"))
    assert uncommented(user[0]).endswith("CREATE USER sluice_reader_session WITHOUT LOGIN")
    assert user[1].endswith("ALTER ROLE sluice_reader ADD MEMBER sluice_reader_session")
    assert user[2] == "GRANT IMPERSONATE ON USER::sluice_reader_session TO sluice_processor"
    assert "sluice_reader_session" not in sql_file(SqlDialect.TSQL, "V0003__row_level_security")
