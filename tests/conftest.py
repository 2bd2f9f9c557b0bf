"""Session-wide test infrastructure, started lazily: a test that needs Azurite or PostgreSQL gets one
per session (started on first use, stopped at the end); everything a test writes is its own (a fresh
database per test, fresh workspaces, so fresh containers).

Fixtures:
    azurite          session   devhost.azurite.Azurite, running on free loopback ports
    azurite_connection_string  its storage connection string
    postgres_cluster session   tests.support.postgres.PostgresCluster (initdb'd, started)
    postgres         session   ODBC connection string of a session database (unprivileged role)
    pg_database      function  PostgresDatabase(name, connection_string): fresh, dropped afterwards
    sqlite_path      function  path of a fresh SQLite file
    sql_target       function  SqlTarget(dialect, connection), parametrized sqlite / postgresql
    runtime          function  Runtime: the real services() on Azurite + sql_target, migrated, one
                               workspace created; parametrized sqlite / postgresql
    sqlite_runtime   function  the same on SQLite only (tests whose subject is not SQL)

A missing binary or driver fails the test with what to install; it is never skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.azurite import Azurite
from shared.runtime import reset_services
from shared.settings import SqlDialect
from tests.support.postgres import MissingTool, PostgresCluster, PostgresDatabase, find_bin_dir
from tests.support.runtime import Runtime, SqlTarget, configure_runtime
from tests.support.storage import azurite_for_tests

DIALECTS = [SqlDialect.SQLITE, SqlDialect.POSTGRESQL]


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    yield from azurite_for_tests(tmp_path_factory)


@pytest.fixture
def azurite_connection_string(azurite: Azurite) -> str:
    return azurite.ports.connection_string


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    missing = ""
    try:
        cluster = PostgresCluster(bin_dir=find_bin_dir())
        cluster.start()
    except MissingTool as error:
        missing = str(error)
    if missing:
        pytest.fail(missing, pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres(postgres_cluster: PostgresCluster) -> str:
    """ODBC connection string of a database shared by the session; tests that write use pg_database."""
    return postgres_cluster.create_database("sluice_session").connection_string


@pytest.fixture
def pg_database(postgres_cluster: PostgresCluster) -> Iterator[PostgresDatabase]:
    database = postgres_cluster.create_database()
    try:
        yield database
    finally:
        postgres_cluster.drop_database(database.name)


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "sluice.db"


def _sql_target(request: pytest.FixtureRequest, dialect: SqlDialect) -> SqlTarget:
    # getfixturevalue keeps PostgreSQL lazy: a SQLite-only selection never starts a cluster.
    if dialect is SqlDialect.POSTGRESQL:
        database: PostgresDatabase = request.getfixturevalue("pg_database")
        return SqlTarget(dialect, database.connection_string)
    path: Path = request.getfixturevalue("sqlite_path")
    return SqlTarget(dialect, str(path))


@pytest.fixture(params=DIALECTS, ids=[d.value for d in DIALECTS])
def sql_target(request: pytest.FixtureRequest) -> SqlTarget:
    return _sql_target(request, request.param)


def _runtime(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sql: SqlTarget
) -> Iterator[Runtime]:
    connection_string: str = request.getfixturevalue("azurite_connection_string")
    try:
        yield configure_runtime(
            monkeypatch,
            storage_connection_string=connection_string,
            sql=sql,
            secrets_dir=tmp_path / "secrets",
        )
    finally:
        reset_services()


@pytest.fixture(params=DIALECTS, ids=[d.value for d in DIALECTS])
def runtime(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Runtime]:
    yield from _runtime(request, monkeypatch, tmp_path, _sql_target(request, request.param))


@pytest.fixture
def sqlite_runtime(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Runtime]:
    yield from _runtime(request, monkeypatch, tmp_path, _sql_target(request, SqlDialect.SQLITE))
