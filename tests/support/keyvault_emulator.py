"""KeyVaultRestEmulator: the replacement for Azure Key Vault in tests.

Key Vault cannot run on these machines, so the Key Vault adapter (shared.keyvault) is tested at its
HTTP boundary instead: the emulator is an azure-core `HttpTransport` handed to the real
`azure.keyvault.secrets.SecretClient` (`SecretClient(vault_url=..., credential=..., transport=emulator)`),
so every policy of the SDK's pipeline (challenge authentication, retries, error mapping,
deserialisation) runs unchanged and only the socket is replaced. It answers with Key Vault's REST
semantics, as documented for the secrets API (learn.microsoft.com/rest/api/keyvault/secrets) and as
azure-keyvault-secrets 4.12 uses them:

- challenge-based authentication: a request without `Authorization: Bearer <token>` (the SDK's first
  request, sent without its body) gets 401 with
  `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/{tenant}",
  resource="https://vault.azure.net"`; a bearer token other than the accepted one gets 401 as well;
- `PUT /secrets/{name}`: sets a secret, each set is a new version; 409 Conflict while the name is
  soft-deleted (Key Vault refuses to reuse it until it is recovered or purged);
- `GET /secrets/{name}/` (latest version) and `GET /secrets/{name}/{version}`: 404 `SecretNotFound`
  when missing;
- `DELETE /secrets/{name}`: soft delete, answers the DeletedSecretBundle (with `recoveryId`, so the
  SDK's poller knows soft delete is on); 404 `SecretNotFound` when missing;
- `GET /deletedsecrets/{name}` (what the delete poller polls) and `DELETE /deletedsecrets/{name}`
  (purge, 204);
- `api-version` is required on every request (400 `BadParameter` without it), secret names follow
  Key Vault's rule `^[0-9a-zA-Z-]{1,127}$` (400 `BadParameter` otherwise);
- error bodies are Key Vault's `{"error": {"code": ..., "message": ...}}`;
- injected faults, consumed one per request before anything else: 429 `Throttled` and
  503 `ServiceUnavailable` with `Retry-After`, 403 `Forbidden` (`ForbiddenByRbac`: the identity lacks a
  role), and dropped connections (the transport raises
  `azure.core.exceptions.ServiceRequestError`, as the requests transport does when it cannot connect).

`sleep()` is the transport's, which the SDK's retry policy calls for Retry-After and back-off: the
emulator records the duration instead of sleeping, so retry tests are instant and can assert that the
SDK honoured Retry-After.

Not emulated (a request for them raises NotImplementedError, so a test fails loudly if the adapter
starts using them): listing secrets or versions, update of attributes, backup/restore, recover, tags
and attribute semantics (enabled/nbf/exp are echoed, not enforced), RBAC (any holder of the accepted
token may do anything), CAE claims challenges, eventual consistency of soft delete (a deleted secret
is at once in /deletedsecrets) and real throttling limits.
"""

from __future__ import annotations

import io
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

KEY_VAULT_RESOURCE = "https://vault.azure.net"
KEY_VAULT_SCOPE = f"{KEY_VAULT_RESOURCE}/.default"
ENTRA_AUTHORITY = "https://login.microsoftonline.com"
RECOVERY_LEVEL = "Recoverable+Purgeable"
RECOVERABLE_DAYS = 90
_SECRET_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")


def new_vault_url() -> str:
    """A vault URL of its own for each test: the SDK caches challenges per vault host process-wide."""
    return f"https://sluice-{uuid.uuid4().hex[:12]}.vault.azure.net"


class StaticTokenCredential:
    """A TokenCredential that hands out one fixed token and records what it was asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[tuple[tuple[str, ...], str | None]] = []  # (scopes, tenant_id)

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.requests.append((scopes, tenant_id))
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    host: str
    path: str
    query: Mapping[str, list[str]]
    authorization: str | None
    body: bytes
    status: int | None  # None: the connection was dropped


@dataclass(frozen=True)
class _Fault:
    status: int | None  # None: drop the connection
    retry_after_seconds: int | None = None


@dataclass
class _Version:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    created: int
    updated: int


@dataclass
class _Secret:
    versions: list[_Version] = field(default_factory=list)


@dataclass
class _Deleted:
    secret: _Secret
    deleted_date: int
    scheduled_purge_date: int


class _Reply(Exception):
    """Raised inside the emulator to answer a request early (an error response)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, dict[str, Any]] = {"error": {"code": code, "message": message}}
        self.headers = headers or {}


def _whole_body(*, response: HttpResponseImpl, **_: Any) -> Iterator[bytes]:
    yield response.content


class _EmulatorResponse(HttpResponseImpl):
    def __init__(self, request: HttpRequest, status: int, body: bytes, headers: dict[str, str]) -> None:
        all_headers = case_insensitive_dict(headers)
        if body:
            all_headers.setdefault("Content-Type", "application/json; charset=utf-8")
        all_headers["Content-Length"] = str(len(body))
        super().__init__(
            request=request,
            internal_response=io.BytesIO(body),
            status_code=status,
            reason=HTTPStatus(status).phrase,
            content_type=all_headers.get("Content-Type"),
            headers=all_headers,
            stream_download_generator=_whole_body,
        )
        self._content = body


class KeyVaultRestEmulator(HttpTransport[HttpRequest, HttpResponse]):
    """An in-process Key Vault (secrets API) behind the SDK's transport interface; see the module."""

    def __init__(
        self,
        *,
        vault_url: str,
        tenant_id: str,
        accepted_token: str,
        challenge_resource: str = KEY_VAULT_RESOURCE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        parts = urlsplit(vault_url)
        self.vault_url = vault_url.rstrip("/")
        self.host = parts.netloc.lower()
        self.tenant_id = tenant_id
        self.challenge_resource = challenge_resource
        self._accepted_token = accepted_token
        self._clock = clock
        self._secrets: dict[str, _Secret] = {}
        self._deleted: dict[str, _Deleted] = {}
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.slept: list[float] = []

    # -- fault injection ------------------------------------------------------------------------

    def throttle(self, *, times: int = 1, retry_after_seconds: int = 1) -> None:
        """The next `times` requests get 429 Throttled with Retry-After."""
        self._faults.extend(_Fault(429, retry_after_seconds) for _ in range(times))

    def unavailable(self, *, times: int = 1, retry_after_seconds: int | None = None) -> None:
        """The next `times` requests get 503 ServiceUnavailable (with Retry-After when given)."""
        self._faults.extend(_Fault(503, retry_after_seconds) for _ in range(times))

    def deny_access(self, *, times: int = 1) -> None:
        """The next `times` requests get 403 Forbidden (ForbiddenByRbac): the caller lacks a role."""
        self._faults.extend(_Fault(403) for _ in range(times))

    def drop_connections(self, *, times: int = 1) -> None:
        """The next `times` requests never reach the vault: the transport raises ServiceRequestError."""
        self._faults.extend(_Fault(None) for _ in range(times))

    # -- inspection -----------------------------------------------------------------------------

    def current_value(self, name: str) -> str | None:
        secret = self._secrets.get(name.lower())
        return secret.versions[-1].value if secret else None

    def version_count(self, name: str) -> int:
        secret = self._secrets.get(name.lower())
        return len(secret.versions) if secret else 0

    def is_soft_deleted(self, name: str) -> bool:
        return name.lower() in self._deleted

    def secret_reads(self) -> list[RecordedRequest]:
        """Authorised GET /secrets/... requests that the vault answered."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and r.path.startswith("/secrets/") and r.status not in (None, 401)
        ]

    # -- HttpTransport --------------------------------------------------------------------------

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> KeyVaultRestEmulator:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def sleep(self, duration: float) -> None:
        self.slept.append(duration)

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        parts = urlsplit(request.url)
        record = RecordedRequest(
            method=request.method.upper(),
            host=parts.netloc.lower(),
            path=unquote(parts.path),
            query=parse_qs(parts.query),
            authorization=request.headers.get("Authorization"),
            body=_body_bytes(request),
            status=None,
        )
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            if fault is not None and fault.status is None:
                self.requests.append(record)
                raise ServiceRequestError(f"Failed to establish a new connection to {parts.netloc}.")
            try:
                if fault is not None:
                    raise _fault_reply(fault)
                status, document, headers = self._handle(record)
            except _Reply as reply:
                status, document, headers = reply.status, reply.body, reply.headers
            self.requests.append(replace(record, status=status))
        payload = orjson.dumps(document) if document is not None else b""
        return _EmulatorResponse(request, status, payload, headers)

    # -- the service ----------------------------------------------------------------------------

    def _handle(self, record: RecordedRequest) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        if record.host != self.host:
            raise ServiceRequestError(f"Name or service not known: {record.host}")
        self._authenticate(record.authorization)
        if not record.query.get("api-version"):
            raise _Reply(400, "BadParameter", "The request URI contains an invalid or missing api-version.")
        method = record.method
        segments = [s for s in record.path.split("/") if s != ""]
        trailing_slash = record.path.endswith("/")
        if len(segments) in (2, 3) and segments[0] == "secrets":
            name = _secret_name(segments[1])
            version = segments[2] if len(segments) == 3 else ""
            if method == "PUT" and len(segments) == 2 and not trailing_slash:
                return 200, self._set(name, record.body), {}
            if method == "GET":
                return 200, self._get(name, version), {}
            if method == "DELETE" and len(segments) == 2:
                return 200, self._delete(name), {}
        if len(segments) == 2 and segments[0] == "deletedsecrets":
            name = _secret_name(segments[1])
            if method == "GET":
                return 200, self._deleted_bundle(name, self._deleted_or_404(name)), {}
            if method == "DELETE":
                self._deleted_or_404(name)
                del self._deleted[name.lower()]
                return 204, None, {}
        raise NotImplementedError(f"KeyVaultRestEmulator does not emulate {method} {record.path}")

    def _authenticate(self, authorization: str | None) -> None:
        challenge = {
            "WWW-Authenticate": (
                f'Bearer authorization="{ENTRA_AUTHORITY}/{self.tenant_id}", '
                f'resource="{self.challenge_resource}"'
            )
        }
        if not authorization:
            raise _Reply(
                401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", challenge
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token != self._accepted_token:
            raise _Reply(401, "Unauthorized", "The bearer token is not valid for this vault.", challenge)

    def _now(self) -> int:
        return int(self._clock().timestamp())

    def _set(self, name: str, body: bytes) -> dict[str, Any]:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _Reply(400, "BadParameter", "The request body is not valid JSON.") from None
        if not isinstance(document, dict) or not isinstance(document.get("value"), str):
            raise _Reply(400, "BadParameter", "Property 'value' is required and must be a string.")
        if name.lower() in self._deleted:
            raise _Reply(
                409,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be "
                "reused; in this state, the secret can only be recovered or purged.",
            )
        now = self._now()
        version = _Version(
            version=uuid.uuid4().hex,
            value=document["value"],
            content_type=document.get("contentType"),
            tags=document.get("tags"),
            created=now,
            updated=now,
        )
        self._secrets.setdefault(name.lower(), _Secret()).versions.append(version)
        return self._bundle(name, version, with_value=True)

    def _get(self, name: str, version: str) -> dict[str, Any]:
        secret = self._secrets.get(name.lower())
        found = None
        if secret is not None:
            found = (
                secret.versions[-1]
                if not version
                else next((v for v in secret.versions if v.version == version), None)
            )
        if found is None:
            raise _secret_not_found(f"{name}/{version}" if version else name)
        return self._bundle(name, found, with_value=True)

    def _delete(self, name: str) -> dict[str, Any]:
        secret = self._secrets.pop(name.lower(), None)
        if secret is None:
            raise _secret_not_found(name)
        deleted_at = self._now()
        deleted = _Deleted(
            secret=secret,
            deleted_date=deleted_at,
            scheduled_purge_date=int(
                (datetime.fromtimestamp(deleted_at, UTC) + timedelta(days=RECOVERABLE_DAYS)).timestamp()
            ),
        )
        self._deleted[name.lower()] = deleted
        return self._deleted_bundle(name, deleted)

    def _deleted_or_404(self, name: str) -> _Deleted:
        deleted = self._deleted.get(name.lower())
        if deleted is None:
            raise _Reply(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        return deleted

    def _bundle(self, name: str, version: _Version, *, with_value: bool) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "id": f"{self.vault_url}/secrets/{name}/{version.version}",
            "attributes": {
                "enabled": True,
                "created": version.created,
                "updated": version.updated,
                "recoveryLevel": RECOVERY_LEVEL,
                "recoverableDays": RECOVERABLE_DAYS,
            },
        }
        if with_value:
            bundle["value"] = version.value
        if version.content_type is not None:
            bundle["contentType"] = version.content_type
        if version.tags:
            bundle["tags"] = version.tags
        return bundle

    def _deleted_bundle(self, name: str, deleted: _Deleted) -> dict[str, Any]:
        bundle = self._bundle(name, deleted.secret.versions[-1], with_value=False)
        bundle["recoveryId"] = f"{self.vault_url}/deletedsecrets/{name}"
        bundle["deletedDate"] = deleted.deleted_date
        bundle["scheduledPurgeDate"] = deleted.scheduled_purge_date
        return bundle


def _fault_reply(fault: _Fault) -> _Reply:
    headers = {} if fault.retry_after_seconds is None else {"Retry-After": str(fault.retry_after_seconds)}
    if fault.status == 403:
        reply = _Reply(403, "Forbidden", "Caller is not authorized to perform action on resource.", headers)
        reply.body["error"]["innererror"] = {"code": "ForbiddenByRbac"}
        return reply
    if fault.status == 429:
        return _Reply(
            429, "Throttled", "Request was not processed because too many requests were received.", headers
        )
    return _Reply(503, "ServiceUnavailable", "The service is temporarily unavailable.", headers)


def _secret_not_found(shown: str) -> _Reply:
    return _Reply(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {shown} was not found in this key vault. If you recently deleted this "
        "secret you may be able to recover it using the correct recovery command. For help resolving "
        "this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _secret_name(segment: str) -> str:
    if not _SECRET_NAME.fullmatch(segment):
        raise _Reply(
            400, "BadParameter", f"The secret name {segment!r} is not valid: ^[0-9a-zA-Z-]{{1,127}}$."
        )
    return segment


def _body_bytes(request: HttpRequest) -> bytes:
    content = request.content
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    raise NotImplementedError(f"KeyVaultRestEmulator cannot read a {type(content).__name__} body")
