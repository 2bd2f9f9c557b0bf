"""Signing in to Azure SQL, with SQL Server REPLACED AT THE DRIVER BOUNDARY: `pyodbc.connect` is a fake
that records the connection string and pre-connection attributes it is handed and returns a fake
connection, and Entra ID is a fake TokenCredential whose tokens expire when the test's clock says. What
is proven is what reaches the ODBC driver; that Azure SQL accepts it needs a real Azure SQL database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyodbc
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.errors import ConfigurationError, DatabaseUnavailable
from shared.settings import Settings, SqlAuth, SqlDialect
from shared.sql import Database
from shared.sql.azure import (
    AZURE_SQL_SCOPE,
    SQL_COPT_SS_ACCESS_TOKEN,
    TOKEN_REFRESH_MARGIN_SECONDS,
    EntraTokenConnector,
    SecretConnector,
    TokenConnection,
    access_token_struct,
    database_for,
)
from tests.unit.fakes import MemorySecrets

SERVER = "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sluice.database.windows.net,1433;Database=sluice;"
SQL_LOGIN = SERVER + "UID=sluice_app;PWD={p;w}}d};"
SECRET_NAME = "sql-connection"
WS = "0c6d2a44-2a3f-4f3e-9c7e-1a2b3c4d5e6f"
T0 = 1_900_000_000.0  # Unix seconds
LIFETIME = 3600


# --- SQL Server replaced at the driver boundary -----------------------------------------------------


@dataclass
class FakeCursor:
    executed: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    rowcount: int = 0

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.executed.append((sql, params))

    def fetchone(self) -> tuple[Any, ...] | None:
        return None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return []


@dataclass
class FakeOdbcConnection:
    """What `pyodbc.connect` returned: records how it was opened and what the Database did with it."""

    connection_string: str
    autocommit: bool
    attrs_before: dict[int, Any] | None
    cursors: list[FakeCursor] = field(default_factory=list)
    commits: int = 0
    closed: bool = False

    def cursor(self) -> FakeCursor:
        self.cursors.append(FakeCursor())
        return self.cursors[-1]

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeOdbcDriver:
    """Stands in for `pyodbc.connect`, the call where the ODBC driver (and SQL Server behind it) starts."""

    opened: list[FakeOdbcConnection] = field(default_factory=list)

    def connect(
        self, connection_string: str, *, autocommit: bool = False, attrs_before: dict[int, Any] | None = None
    ) -> FakeOdbcConnection:
        self.opened.append(FakeOdbcConnection(connection_string, autocommit, attrs_before))
        return self.opened[-1]


@pytest.fixture
def odbc(monkeypatch: pytest.MonkeyPatch) -> FakeOdbcDriver:
    driver = FakeOdbcDriver()
    monkeypatch.setattr(pyodbc, "connect", driver.connect)
    return driver


# --- Entra ID replaced at the TokenCredential boundary ----------------------------------------------


@dataclass
class FakeClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeCredential:
    """A TokenCredential whose n-th token is `token-n`, valid LIFETIME seconds from the clock's now."""

    clock: FakeClock
    scopes: list[tuple[str, ...]] = field(default_factory=list)
    failure: Exception | None = None

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if self.failure is not None:
            raise self.failure
        self.scopes.append(scopes)
        return AccessToken(f"token-{len(self.scopes)}", int(self.clock.now) + LIFETIME)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def credential(clock: FakeClock) -> FakeCredential:
    return FakeCredential(clock)


def sent_token(connection: FakeOdbcConnection) -> str:
    """The token the driver received, decoded from the ACCESSTOKEN structure."""
    assert connection.attrs_before is not None
    struct_bytes = connection.attrs_before[SQL_COPT_SS_ACCESS_TOKEN]
    assert int.from_bytes(struct_bytes[:4], "little") == len(struct_bytes) - 4
    return str(struct_bytes[4:].decode("utf-16-le"))


# --- The ACCESSTOKEN structure -------------------------------------------------------------------------


def test_given_known_token_when_packing_then_length_prefix_and_each_byte_followed_by_zero() -> None:
    assert access_token_struct("eyJ0.x-_") == (
        b"\x10\x00\x00\x00" + b"e\x00y\x00J\x000\x00.\x00x\x00-\x00_\x00"
    )


def test_given_token_longer_than_255_bytes_when_packing_then_length_is_little_endian_uint32() -> None:
    packed = access_token_struct("a" * 300)
    assert packed[:4] == b"\x58\x02\x00\x00"  # 600 bytes
    assert packed[4:] == b"a\x00" * 300  # and no terminator


# --- Entra token connections -----------------------------------------------------------------------------


def test_given_entra_when_connecting_then_driver_gets_token_struct_and_a_string_without_credentials(
    odbc: FakeOdbcDriver, credential: FakeCredential, clock: FakeClock
) -> None:
    connection = EntraTokenConnector(SERVER, credential, clock=clock).connect()
    [opened] = odbc.opened
    assert credential.scopes == [(AZURE_SQL_SCOPE,)]
    assert opened.attrs_before == {SQL_COPT_SS_ACCESS_TOKEN: access_token_struct("token-1")}
    assert opened.connection_string == SERVER
    assert not any(k in opened.connection_string.lower() for k in ("uid=", "pwd=", "authentication="))
    assert opened.autocommit is False  # the Database commits each transaction itself
    assert connection.connection is opened


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("UID=app;PWD=x;", "PWD, UID"),
        ("Authentication=ActiveDirectoryMsi;", "AUTHENTICATION"),
        (" trusted_connection = yes", "TRUSTED_CONNECTION"),
    ],
)
def test_given_entra_and_a_credential_in_the_string_when_building_then_configuration_error(
    odbc: FakeOdbcDriver, credential: FakeCredential, extra: str, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        EntraTokenConnector(SERVER + extra, credential)
    assert odbc.opened == []


def test_given_valid_token_when_connecting_again_then_token_reused(
    odbc: FakeOdbcDriver, credential: FakeCredential, clock: FakeClock
) -> None:
    connector = EntraTokenConnector(SERVER, credential, clock=clock)
    connector.connect()
    clock.now += LIFETIME - TOKEN_REFRESH_MARGIN_SECONDS - 1  # one second before the refresh point
    connector.connect()
    assert len(credential.scopes) == 1
    assert [sent_token(c) for c in odbc.opened] == ["token-1", "token-1"]


def test_given_token_within_refresh_margin_when_connecting_then_new_token_fetched(
    odbc: FakeOdbcDriver, credential: FakeCredential, clock: FakeClock
) -> None:
    connector = EntraTokenConnector(SERVER, credential, clock=clock)
    connector.connect()
    clock.now += LIFETIME - TOKEN_REFRESH_MARGIN_SECONDS
    second = connector.connect()
    assert len(credential.scopes) == 2
    assert [sent_token(c) for c in odbc.opened] == ["token-1", "token-2"]
    assert second.expires_on == clock.now + LIFETIME


def test_given_token_connection_then_stale_from_the_refresh_point_of_its_own_token(
    odbc: FakeOdbcDriver, credential: FakeCredential, clock: FakeClock
) -> None:
    connector = EntraTokenConnector(SERVER, credential, clock=clock)
    old = connector.connect()
    assert not old.is_stale()
    clock.now += LIFETIME - TOKEN_REFRESH_MARGIN_SECONDS
    assert old.is_stale()
    new = connector.connect()  # opened with a fresh token, so good for another lifetime
    assert not new.is_stale()


def test_given_token_connection_then_everything_else_is_the_driver_connection(
    odbc: FakeOdbcDriver, credential: FakeCredential, clock: FakeClock
) -> None:
    connection = EntraTokenConnector(SERVER, credential, clock=clock).connect()
    assert isinstance(connection, TokenConnection)
    connection.cursor().execute("SELECT 1")
    connection.commit()
    connection.close()
    [opened] = odbc.opened
    assert (opened.cursors[0].executed, opened.commits, opened.closed) == ([("SELECT 1", ())], 1, True)


# --- SQL authentication from the secret store ----------------------------------------------------------


@dataclass
class RecordingSecrets(MemorySecrets):
    """The SecretStore port, recording the names read through it."""

    read: list[str] = field(default_factory=list)

    def get_secret(self, name: str) -> str:
        self.read.append(name)
        return super().get_secret(name)


def test_given_secret_when_connecting_then_named_secret_read_through_port_and_passed_to_driver(
    odbc: FakeOdbcDriver,
) -> None:
    secrets = RecordingSecrets(values={SECRET_NAME: SQL_LOGIN})
    SecretConnector(secrets, SECRET_NAME).connect()
    [opened] = odbc.opened
    assert secrets.read == [SECRET_NAME]
    assert (opened.connection_string, opened.attrs_before, opened.autocommit) == (SQL_LOGIN, None, False)


def test_given_rotated_secret_when_connecting_again_then_new_string_used(odbc: FakeOdbcDriver) -> None:
    secrets = RecordingSecrets(values={SECRET_NAME: SQL_LOGIN})
    connector = SecretConnector(secrets, SECRET_NAME)
    connector.connect()
    secrets.set_secret(SECRET_NAME, SQL_LOGIN.replace("p;w}}d", "rotated"))
    connector.connect()
    assert [c.connection_string.endswith("PWD={rotated};") for c in odbc.opened] == [False, True]


# --- Settings and the Database built from them -----------------------------------------------------------

LOCAL = {"SLUICE_STORAGE": "UseDevelopmentStorage=true", "SLUICE_SECRETS_DIR": ".local/secrets"}
ENTRA = LOCAL | {"SLUICE_SQL_DIALECT": "tsql", "SLUICE_SQL_AUTH": "entra", "SLUICE_SQL_CONNECTION": SERVER}
SECRET = LOCAL | {
    "SLUICE_SQL_DIALECT": "tsql",
    "SLUICE_SQL_AUTH": "secret",
    "SLUICE_SQL_CONNECTION_SECRET": SECRET_NAME,
}


def test_given_no_sql_auth_when_reading_then_connection_string_as_before() -> None:
    settings = Settings.from_env(LOCAL | {"SLUICE_SQL_DIALECT": "sqlite", "SLUICE_SQL_CONNECTION": "x.db"})
    assert (settings.sql_auth, settings.sql_connection, settings.sql_connection_secret) == (
        SqlAuth.CONNECTION_STRING,
        "x.db",
        None,
    )


def test_given_entra_and_secret_settings_when_reading_then_typed() -> None:
    entra, secret = Settings.from_env(ENTRA), Settings.from_env(SECRET)
    assert (entra.sql_auth, entra.sql_connection) == (SqlAuth.ENTRA, SERVER)
    assert (secret.sql_auth, secret.sql_connection, secret.sql_connection_secret) == (
        SqlAuth.SECRET,
        "",
        SECRET_NAME,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (ENTRA | {"SLUICE_SQL_AUTH": "password"}, "connection-string, entra, secret"),
        (ENTRA | {"SLUICE_SQL_DIALECT": "postgresql"}, "SLUICE_SQL_DIALECT=tsql"),
        ({k: v for k, v in ENTRA.items() if k != "SLUICE_SQL_CONNECTION"}, "SLUICE_SQL_CONNECTION"),
        (ENTRA | {"SLUICE_SQL_CONNECTION_SECRET": SECRET_NAME}, "only with SLUICE_SQL_AUTH=secret"),
        ({k: v for k, v in SECRET.items() if k != "SLUICE_SQL_CONNECTION_SECRET"}, "expected a secret name"),
        (SECRET | {"SLUICE_SQL_CONNECTION_SECRET": "sql/connection"}, "expected a secret name"),
        (SECRET | {"SLUICE_SQL_CONNECTION": SQL_LOGIN}, "remove SLUICE_SQL_CONNECTION"),
        (SECRET | {"SLUICE_SQL_DIALECT": "sqlite"}, "needs an ODBC"),
    ],
)
def test_given_inconsistent_sql_settings_when_reading_then_error_names_the_setting(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_given_plain_connection_string_when_building_database_then_as_before(tmp_path: Path) -> None:
    env = LOCAL | {"SLUICE_SQL_DIALECT": "sqlite", "SLUICE_SQL_CONNECTION": str(tmp_path / "x.db")}
    database = database_for(Settings.from_env(env), MemorySecrets())
    try:
        database.migrate()
        assert database.blob_processed(WS, "raw/x.json.gz") is False
    finally:
        database.close()


def test_given_entra_settings_when_database_used_then_driver_opened_with_token(
    odbc: FakeOdbcDriver, credential: FakeCredential
) -> None:
    database = database_for(Settings.from_env(ENTRA), MemorySecrets(), credential=credential)
    assert database.dialect is SqlDialect.TSQL
    assert database.blob_processed(WS, "raw/x.json.gz") is False
    [opened] = odbc.opened
    assert sent_token(opened) == "token-1"
    assert opened.cursors[0].executed[0][1] == (WS, "raw/x.json.gz")


def test_given_secret_settings_when_database_used_then_driver_opened_with_the_secret(
    odbc: FakeOdbcDriver,
) -> None:
    secrets = RecordingSecrets(values={SECRET_NAME: SQL_LOGIN})
    database_for(Settings.from_env(SECRET), secrets).blob_processed(WS, "raw/x.json.gz")
    assert secrets.read == [SECRET_NAME]
    assert [c.connection_string for c in odbc.opened] == [SQL_LOGIN]


def test_given_no_token_when_database_used_then_database_unavailable(
    odbc: FakeOdbcDriver, credential: FakeCredential
) -> None:
    credential.failure = ClientAuthenticationError("no managed identity endpoint")
    database = database_for(Settings.from_env(ENTRA), MemorySecrets(), credential=credential)
    with pytest.raises(DatabaseUnavailable, match="no managed identity endpoint"):
        database.blob_processed(WS, "raw/x.json.gz")
    assert odbc.opened == []


def test_given_stale_token_connection_when_database_used_then_replaced_before_use(
    odbc: FakeOdbcDriver, credential: FakeCredential, clock: FakeClock
) -> None:
    database = Database(SqlDialect.TSQL, EntraTokenConnector(SERVER, credential, clock=clock).connect)
    database.blob_processed(WS, "raw/a.json.gz")
    database.blob_processed(WS, "raw/b.json.gz")

    clock.now += LIFETIME - TOKEN_REFRESH_MARGIN_SECONDS
    database.blob_processed(WS, "raw/c.json.gz")

    first, second = odbc.opened
    assert (first.closed, second.closed) == (True, False)
    assert [sent_token(c) for c in odbc.opened] == ["token-1", "token-2"]
    assert [len(c.cursors) for c in odbc.opened] == [2, 1]


def test_given_entra_settings_when_a_reader_session_reads_then_bound_read_only_and_run_as_the_reader_user(
    odbc: FakeOdbcDriver, credential: FakeCredential
) -> None:
    """The app's identity is a member of sluice_processor, which the security policy exempts: before
    its first query, a reader session fixes the workspace (read-only) and drops to the reader user for
    good, that second batch sent without parameters (ad hoc) so that NO REVERT is accepted."""
    database = database_for(Settings.from_env(ENTRA), MemorySecrets(), credential=credential)

    with database.reader(WS) as session:
        assert session.list_usage() == []
        assert session.list_perf() == []

    [opened] = odbc.opened  # the session's own connection, closed with it
    assert opened.closed
    assert pyodbc.pooling is False  # a pool would hand the reader user's connection to the next borrower
    executed = [step for cursor in opened.cursors for step in cursor.executed]
    (context_sql, context_params), (switch_sql, switch_params) = executed[:2]
    assert context_sql.endswith(
        "EXEC sp_set_session_context @key = N'workspace_id', @value = ?, @read_only = 1"
    )
    assert context_params == (WS,)
    assert switch_sql.endswith("\nEXECUTE AS USER = N'sluice_reader_session' WITH NO REVERT")
    assert switch_params == ()
    assert [params for _, params in executed[2:]] == [(WS,), (WS,)]  # the queries, once bound
    assert opened.commits >= 1 and "EXECUTE AS" not in " ".join(sql for sql, _ in executed[2:])
