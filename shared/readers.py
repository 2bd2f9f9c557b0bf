"""Who may read a workspace through the query API, and the registry of Entra principals granted on it.

Two credentials, both in `Authorization`:

- `Key <reader key>`: the workspace's reader key (secret store `ws-{workspace}-reader-key`), separate
  from the ingest keys, made with the workspace and rotated with `sluice workspace rotate-key W --which
  reader`. Compared in constant time; an unknown workspace is compared against a decoy, so its answer
  cannot be told apart from a wrong key's.
- `Bearer <JWT>` from the configured issuer (shared.tokens; audience READER_AUDIENCE, Sluice's own
  application, not Azure Monitor's) whose `roles` hold READER_ROLE, for a principal granted on the
  workspace (`sluice reader grant`, the Azure Table `readergrants`: PartitionKey = workspace, RowKey =
  principal, read on every request so a revocation counts from the next one).

Every refusal is the same 403 InvalidAuthorization, tagged for the audit log (shared.http)."""

from __future__ import annotations

import hmac
import logging
import secrets as token_source
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient

from shared.audit import AuthFailureReason
from shared.azure_storage import LazyTable, translated
from shared.errors import (
    AuthorizationFailed,
    BadRequest,
    Conflict,
    InvalidCustomerId,
    InvalidToken,
    WorkspaceNotFound,
)
from shared.ids import parse_workspace_id
from shared.telemetry import workspace_log
from shared.tokens import TokenValidator, parse_principal, principal_of
from shared.workspaces import Workspace, WorkspaceState

READER_ROLE = "Sluice.Reader"
# The application ID URI the reader tokens are issued for (Entra: the app registration exposing the
# Sluice.Reader app role must use it).
READER_AUDIENCE = "api://sluice"
READER_GRANTS_TABLE = "readergrants"
_DECOY_KEY = token_source.token_urlsafe(64)

log = logging.getLogger("sluice.readers")


@dataclass(frozen=True, slots=True)
class ReaderGrant:
    workspace_id: str
    principal: str  # canonical GUID
    granted_at: datetime


class ReaderGrants(Protocol):
    def is_granted(self, workspace_id: str, principal: str) -> bool: ...

    def grant(self, grant: ReaderGrant) -> bool:
        """False when the principal was granted already."""

    def revoke(self, workspace_id: str, principal: str) -> bool:
        """False when the principal was not granted."""

    def list_grants(self, workspace_id: str) -> list[ReaderGrant]: ...


class Workspaces(Protocol):
    """shared.workspaces.WorkspaceDirectory."""

    def get_workspace(self, workspace_id: str) -> Workspace: ...

    def reader_key(self, workspace_id: str) -> str | None: ...


def canonical_principal(value: str) -> str:
    principal = parse_principal(value)
    if principal is None:
        raise BadRequest(f"Principal {value[:100]!r} is not an Entra object or application id (GUID).")
    return principal


class ReaderAuthenticator:
    def __init__(
        self, *, workspaces: Workspaces, grants: ReaderGrants, tokens: TokenValidator | None
    ) -> None:
        self._workspaces = workspaces
        self._grants = grants
        self._tokens = tokens

    def authenticate(self, authorization: str | None, workspace_id: str) -> Workspace:
        """The workspace the caller may read; AuthorizationFailed (403) otherwise, the same answer for
        an unknown workspace, a wrong key, a token without the role or the grant."""
        scheme, _, credential = (authorization or "").strip().partition(" ")
        if scheme.lower() == "key":
            return self._by_key(credential.strip(), workspace_id)
        if scheme.lower() == "bearer":
            return self._by_token(authorization or "", workspace_id)
        raise _refused("The Authorization header must be 'Key <reader key>' or 'Bearer <token>'.").tag(
            AuthFailureReason.BAD_READER_KEY
        )

    def _by_key(self, key: str, workspace_id: str) -> Workspace:
        workspace = self._readable(workspace_id)
        expected = (self._workspaces.reader_key(workspace.workspace_id) if workspace else None) or _DECOY_KEY
        # Compared whatever was found, so an unknown workspace takes the time a wrong key does.
        matches = hmac.compare_digest(key.encode("utf-8"), expected.encode("utf-8"))
        if workspace is None:
            raise _refused().tag(AuthFailureReason.UNKNOWN_WORKSPACE)
        if not matches or expected is _DECOY_KEY:
            workspace_log(log, workspace.workspace_id).warning("reader refused: wrong reader key")
            raise _refused().tag(AuthFailureReason.BAD_READER_KEY, workspace.workspace_id)
        return workspace

    def _by_token(self, authorization: str, workspace_id: str) -> Workspace:
        if self._tokens is None:
            raise _refused("This deployment accepts no bearer tokens: no token issuer is configured.").tag(
                AuthFailureReason.BAD_TOKEN
            )
        try:
            claims = self._tokens.claims(authorization)
            principal = principal_of(claims)
        except InvalidToken as error:
            log.warning("reader token refused: %s: %s", error.code, error.message)
            raise _refused(error.message).tag(AuthFailureReason.BAD_TOKEN) from None
        workspace = self._readable(workspace_id)
        if workspace is None:
            raise _refused().tag(AuthFailureReason.UNKNOWN_WORKSPACE)
        roles = claims.get("roles")
        if not (isinstance(roles, list) and READER_ROLE in roles) or not self._grants.is_granted(
            workspace.workspace_id, principal
        ):
            workspace_log(log, workspace.workspace_id).warning("principal %s is not a reader", principal)
            raise _refused().tag(AuthFailureReason.NOT_A_READER, workspace.workspace_id)
        return workspace

    def _readable(self, workspace_id: str) -> Workspace | None:
        """The workspace, unless it is unknown, not a GUID, or deleted (its data is on its way out). A
        path segment that is no GUID never reaches the registry (nor a table key)."""
        try:
            workspace = self._workspaces.get_workspace(parse_workspace_id(workspace_id))
        except (InvalidCustomerId, WorkspaceNotFound):
            return None
        return None if workspace.state is WorkspaceState.DELETED else workspace


REFUSED = "The reader key or token is not valid for this workspace."


def _refused(message: str = REFUSED) -> AuthorizationFailed:
    return AuthorizationFailed(message)


class TableReaderGrants:
    def __init__(
        self,
        service: TableServiceClient,
        *,
        table_name: str = READER_GRANTS_TABLE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._table = LazyTable(service, table_name)
        self._clock = clock

    def is_granted(self, workspace_id: str, principal: str) -> bool:
        with translated("reading the reader grants"):
            try:
                self._table.client.get_entity(partition_key=workspace_id, row_key=principal)
            except ResourceNotFoundError:  # no such grant, or no table yet
                return False
        return True

    def grant(self, grant: ReaderGrant) -> bool:
        try:
            self._table.create(
                {
                    "PartitionKey": grant.workspace_id,
                    "RowKey": grant.principal,
                    "granted_at": grant.granted_at,
                },
                what="granting a reader",
            )
        except Conflict:  # granted already
            return False
        return True

    def revoke(self, workspace_id: str, principal: str) -> bool:
        if not self.is_granted(workspace_id, principal):
            return False
        with translated("revoking a reader"):
            self._table.client.delete_entity(partition_key=workspace_id, row_key=principal)
        return True

    def list_grants(self, workspace_id: str) -> list[ReaderGrant]:
        with translated("listing the reader grants"):
            try:
                entities = list(
                    self._table.client.query_entities("PartitionKey eq @ws", parameters={"ws": workspace_id})
                )
            except ResourceNotFoundError:
                return []
        return sorted((_grant(e) for e in entities), key=lambda g: g.granted_at)


def _grant(entity: Any) -> ReaderGrant:
    return ReaderGrant(
        workspace_id=entity["PartitionKey"], principal=entity["RowKey"], granted_at=entity["granted_at"]
    )
