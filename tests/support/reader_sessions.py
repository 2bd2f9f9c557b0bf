"""Reader sessions as the tests drive them by hand: a pyodbc connection (autocommit, like a client's)
bound to a workspace by the PostgreSQL bind_reader statement a reader session runs first, and the
T-SQL binding's text as it is checked without a server (its batches without comment lines, and the
switch to the reader user)."""

from __future__ import annotations

from typing import Any

import shared.sql as sql_module
from shared.settings import SqlDialect

EXECUTE_AS_READER = "EXECUTE AS USER = N'sluice_reader_session' WITH NO REVERT"


def uncommented(batch: str) -> str:
    return "\n".join(line for line in batch.splitlines() if not line.lstrip().startswith("--")).strip()


def connect(connection_string: str) -> Any:
    import pyodbc

    return pyodbc.connect(connection_string, autocommit=True)


def bind(connection: Any, workspace_id: str) -> None:
    """What a reader session runs first: the bind_reader statement itself."""
    bind_reader = sql_module.statement(SqlDialect.POSTGRESQL, "bind_reader")
    connection.cursor().execute(bind_reader.text, *bind_reader.bind({"workspace_id": workspace_id}))
