"""Signing in to Azure SQL through pyodbc + ODBC Driver 18, chosen by SLUICE_SQL_AUTH:

- `entra`: an access token of the app's identity (azure-identity) is handed to the driver before it
  connects; the connection string carries no credential at all. The token is fetched again shortly
  before it expires, and every connection knows the expiry of the token it was opened with
  (`TokenConnection.is_stale()`), so the Database can replace it before use.
- `secret`: SQL authentication; the whole connection string, UID and PWD included, is a secret in the
  secret store (Key Vault in Azure), read whenever a connection is opened.
- `connection-string` (the default): SLUICE_SQL_CONNECTION as is (SQLite, PostgreSQL, tests).

Connections are opened lazily and kept by the Database, so none of this runs on the ingestion path.
Errors are left to the Database, which turns any failure to connect into DatabaseUnavailable."""

from __future__ import annotations

import re
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigurationError
from shared.settings import SQL_AUTH_SETTING, SQL_CONNECTION_SETTING, Settings, SqlAuth

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

    from shared.sql import Database
    from shared.workspaces import SecretStore

# The pre-connection attribute of Microsoft's ODBC driver that takes an access token (msodbcsql.h).
SQL_COPT_SS_ACCESS_TOKEN = 1256
AZURE_SQL_SCOPE = "https://database.windows.net/.default"
# Fetch a new token this long before the current one expires, and retire the connections opened with
# it at the same moment: a connection never starts a transaction on a token about to run out.
TOKEN_REFRESH_MARGIN_SECONDS = 5 * 60

# "The connection string must not contain UID, PWD, Authentication, or Trusted_Connection keywords"
# (Using Microsoft Entra ID with the ODBC Driver, see access_token_struct). A keyword is what follows
# the start or a `;`; a match inside a braced value can only refuse a string, never let one through.
_SIGN_IN_KEYWORD = re.compile(r"(?:^|;)\s*(uid|pwd|authentication|trusted_connection)\s*=", re.IGNORECASE)


def access_token_struct(token: str) -> bytes:
    """The ACCESSTOKEN structure SQL_COPT_SS_ACCESS_TOKEN points to: a 4-byte little-endian length,
    then the token "expanded so that each byte is followed by a 0 padding byte" with no terminator.

    Source: Microsoft, "Using Microsoft Entra ID with the ODBC Driver", section "Authenticating with an
    Access Token" (https://learn.microsoft.com/sql/connect/odbc/using-azure-active-directory;
    MicrosoftDocs/sql-docs docs/connect/odbc/using-azure-active-directory.md). A JWT is ASCII
    (base64url and dots), so that expansion is exactly its UTF-16-LE encoding, as in the usual pyodbc
    recipe `struct.pack("<I", len(b)) + b` with `b = token.encode("utf-16-le")`."""
    data = token.encode("utf-16-le")
    return struct.pack("<I", len(data)) + data


class TokenConnection:
    """A driver connection opened with an access token, plus that token's expiry.

    An open session outlives its token, but a session is only as good as its next re-authentication:
    the driver can reconnect a dropped idle connection only with the token it was given. Replacing the
    connection before the token expires gives the next one a fresh token. pyodbc's Connection can be
    neither subclassed nor weakly referenced, so the expiry rides on this wrapper; every other attribute
    is the driver connection's own."""

    __slots__ = ("_clock", "_margin", "connection", "expires_on")

    def __init__(
        self, connection: Any, *, expires_on: float, clock: Callable[[], float], margin: float
    ) -> None:
        self.connection = connection
        self.expires_on = expires_on
        self._clock = clock
        self._margin = margin

    def is_stale(self) -> bool:
        return self._clock() >= self.expires_on - self._margin

    def __getattr__(self, name: str) -> Any:
        # Only for names not defined here: cursor, commit, rollback, close... go to the driver.
        return getattr(self.connection, name)


class EntraTokenConnector:
    """Opens Azure SQL connections with an Entra access token; one token is shared by the connections
    opened while it is valid. azure-identity caches tokens too; keeping the token here makes the moment
    of refresh explicit and gives each connection the expiry of the token it was opened with."""

    def __init__(
        self,
        connection_string: str,
        credential: TokenCredential,
        *,
        clock: Callable[[], float] = time.time,  # AccessToken.expires_on is in Unix seconds
        refresh_margin_seconds: float = TOKEN_REFRESH_MARGIN_SECONDS,
    ) -> None:
        keywords = sorted({k.upper() for k in _SIGN_IN_KEYWORD.findall(connection_string)})
        if keywords:
            # The driver refuses a token beside another way of signing in; say so at start instead.
            raise ConfigurationError(
                f"With {SQL_AUTH_SETTING}=entra, {SQL_CONNECTION_SETTING} must not contain "
                f"{', '.join(keywords)}: the access token is the only credential."
            )
        self._connection_string = connection_string
        self._credential = credential
        self._clock = clock
        self._margin = refresh_margin_seconds
        self._token: AccessToken | None = None
        self._lock = threading.Lock()

    def connect(self) -> TokenConnection:
        from shared.sql import odbc

        token = self._current_token()
        connection = odbc().connect(
            self._connection_string,
            autocommit=False,
            attrs_before={SQL_COPT_SS_ACCESS_TOKEN: access_token_struct(token.token)},
        )
        return TokenConnection(
            connection, expires_on=token.expires_on, clock=self._clock, margin=self._margin
        )

    def _current_token(self) -> AccessToken:
        with self._lock:  # one refresh at a time, whatever the number of Databases sharing this
            if self._token is None or self._clock() >= self._token.expires_on - self._margin:
                self._token = self._credential.get_token(AZURE_SQL_SCOPE)
            return self._token


class SecretConnector:
    """Opens connections with a SQL-authentication connection string kept in the secret store.

    Read on every connect, which is rare (the Database keeps its connection): a rotated password is
    used by the next connection without a restart, and the string is never in App Settings or the
    process environment. The string is handed to the driver only, never logged."""

    def __init__(self, secrets: SecretStore, secret_name: str) -> None:
        self._secrets = secrets
        self._secret_name = secret_name

    def connect(self) -> Any:
        from shared.sql import odbc

        return odbc().connect(self._secrets.get_secret(self._secret_name), autocommit=False)


def database_for(
    settings: Settings, secrets: SecretStore, *, credential: TokenCredential | None = None
) -> Database:
    """The Database for SLUICE_SQL_AUTH. `credential` defaults to the app's identity, the one that
    already reads storage and Key Vault (shared.azure_storage.credential_for)."""
    from shared.sql import Database

    if settings.sql_auth is SqlAuth.ENTRA:
        if credential is None:
            from shared.azure_storage import credential_for

            credential = credential_for(settings.storage)
        entra = EntraTokenConnector(settings.sql_connection, credential)
        return Database(settings.sql_dialect, entra.connect)
    if settings.sql_auth is SqlAuth.SECRET:
        assert settings.sql_connection_secret is not None  # Settings guarantees it with SqlAuth.SECRET
        stored = SecretConnector(secrets, settings.sql_connection_secret)
        return Database(settings.sql_dialect, stored.connect)
    return Database.open(settings.sql_dialect, settings.sql_connection)
