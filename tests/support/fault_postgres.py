"""PostgreSQL faults from outside the code under test: a table lock that holds a writer inside its
transaction (readers still read), and pg_terminate_backend on the writer, as an operator or a failover
ends a session."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from tests.support.postgres import PostgresCluster


class HeldTableLock:
    """A superuser transaction holding `LOCK TABLE ... IN EXCLUSIVE MODE` until `release()`: another
    session's INSERT/UPDATE on the table waits (inside its transaction), a SELECT does not."""

    def __init__(self, cluster: PostgresCluster, database: str, table: str) -> None:
        import pyodbc

        self._connection: Any = pyodbc.connect(
            cluster.connection_string(database, superuser=True), autocommit=False
        )
        self._connection.cursor().execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")

    def release(self) -> None:
        with suppress(Exception):  # released either way once the connection is closed
            self._connection.rollback()
        self._connection.close()


def backends_waiting_on_a_lock(cluster: PostgresCluster, database: str) -> list[int]:
    """The app role's sessions of the database that wait on a lock right now."""
    rows = cluster.admin_execute(
        "SELECT pid FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND usename = '{cluster.app_user}' AND wait_event_type = 'Lock'"
    )
    return [int(pid) for (pid,) in rows]


def terminate_backend(cluster: PostgresCluster, pid: int) -> bool:
    [(terminated,)] = cluster.admin_execute(f"SELECT pg_terminate_backend({int(pid)})")
    return bool(terminated)


def committed_value(cluster: PostgresCluster, database: str, query: str) -> int:
    """The number a one-value SELECT answers in a session of its own: what is committed, whoever waits
    on what."""
    [(count,)] = cluster.admin_execute(query, database=database)
    return int(count)
