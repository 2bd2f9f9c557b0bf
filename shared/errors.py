"""Every error Sluice raises on purpose, in one tree, and the one table that maps it to HTTP.

    SluiceError
    ├── RequestRejected                    the caller sent something we refuse (4xx)
    │   ├── BadRequest                     400
    │   │   ├── MissingApiVersion, InvalidApiVersion
    │   │   ├── InvalidCustomerId          workspace id is not a GUID
    │   │   ├── MissingContentType, UnsupportedContentType
    │   │   ├── MissingLogType, InvalidLogType
    │   │   ├── InvalidDataFormat          body is not a JSON object or array of objects
    │   │   ├── InvalidCertificate         enrollment: not a usable public X.509 certificate
    │   │   ├── InvalidStream              Logs Ingestion: the stream is not `Custom-<Table>_CL`
    │   │   └── InvalidQuery               query API: a bad parameter or continuation token
    │   ├── InvalidToken                   401 InvalidAuthenticationToken: bearer token missing or invalid
    │   │   ├── TokenExpired               401 its exp is more than 15 minutes past
    │   │   └── InvalidAudience            401 its aud is not https://monitor.azure.com
    │   ├── AuthorizationFailed            403 InvalidAuthorization (also: unknown workspace)
    │   │   └── OperationFailed            403 Logs Ingestion: principal not granted on the DCR (or no
    │   │                                      such DCR), or the stream is not the DCR's
    │   ├── InactiveCustomer               403 workspace exists but is disabled
    │   ├── PayloadTooLarge                413
    │   │   └── ContentLengthLimitExceeded Logs Ingestion: over 1 MB, as sent or decompressed
    │   └── TooManyRequests                429 + Retry-After: over the plan's ingestion rate (and burst)
    │       └── DailyCapExceeded           429 + Retry-After to the next UTC midnight: the day's cap is
    │                                          reached; nothing was stored
    ├── ServiceUnavailable                 503 + Retry-After: a dependency is down, nothing was stored
    │   ├── StorageUnavailable
    │   ├── SecretStoreUnavailable
    │   ├── DatabaseUnavailable
    │   └── TokenKeysUnavailable           the token issuer's JWKS cannot be fetched or read
    ├── Conflict                           409: a thing that must be new exists already
    │   ├── BlobAlreadyExists              raw blobs are never overwritten
    │   └── WorkspaceChanged               the registry entry changed since it was read: re-read, retry
    ├── StorageRejected                    500: storage refused a call (a missing role, a bad request)
    ├── SecretStoreRejected                500: Key Vault refused the app's identity (401/403)
    ├── DatabaseError                      500: the database refused a statement (not transient)
    ├── CorruptBlob                        500: a raw blob's content does not match its metadata
    ├── RetentionIncomplete                retention could not purge some workspaces (others were purged)
    ├── DiagnosticsIncomplete              some diagnostics sources could not be read (others were read)
    ├── NotFound                           a named thing does not exist (SDK 404s translated here)
    │   ├── WorkspaceNotFound
    │   ├── AgentNotFound
    │   ├── BlobNotFound
    │   └── DataCollectionRuleNotFound
    └── ConfigurationError                 a setting is missing or malformed (fail fast at start)

Error codes follow Azure Monitor's HTTP Data Collector API and Logs Ingestion API where one exists, so
existing clients see the codes they already handle. Azure SDK exceptions are translated into this tree
by the adapters.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self


class SluiceError(Exception):
    """Base of all deliberate errors. `code` is machine-readable, the message is for humans."""

    code: ClassVar[str] = "InternalServerError"

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_seconds = retry_after_seconds


class RequestRejected(SluiceError):
    """The request is refused because of what the caller sent; retrying it unchanged will not help.

    An authentication refusal names its `audit_reason` (a shared.audit.AuthFailureReason value) and,
    once the workspace is known to exist, its `workspace_id`: the HTTP edge records it in the audit log
    (aggregated), so made-up workspace ids never open a log of their own."""

    def __init__(
        self, message: str, *, audit_reason: str | None = None, workspace_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.audit_reason = audit_reason
        self.workspace_id = workspace_id

    def tag(self, audit_reason: str, workspace_id: str | None = None) -> Self:
        """Fills in what a lower layer did not know; a reason already set is kept (it is more exact)."""
        self.audit_reason = self.audit_reason or audit_reason
        self.workspace_id = self.workspace_id or workspace_id
        return self


class BadRequest(RequestRejected):
    code = "BadRequest"


class MissingApiVersion(BadRequest):
    code = "MissingApiVersion"


class InvalidApiVersion(BadRequest):
    code = "InvalidApiVersion"


class InvalidCustomerId(BadRequest):
    code = "InvalidCustomerId"


class MissingContentType(BadRequest):
    code = "MissingContentType"


class UnsupportedContentType(BadRequest):
    code = "UnsupportedContentType"


class MissingLogType(BadRequest):
    code = "MissingLogType"


class InvalidLogType(BadRequest):
    code = "InvalidLogType"


class InvalidDataFormat(BadRequest):
    code = "InvalidDataFormat"


class InvalidCertificate(BadRequest):
    code = "InvalidCertificate"


class InvalidStream(BadRequest):
    code = "InvalidStream"


class InvalidQuery(BadRequest):
    code = "InvalidQuery"


class InvalidToken(RequestRejected):
    """Authentication (not authorization) failed: 401, as Azure's Logs Ingestion endpoint answers."""

    code = "InvalidAuthenticationToken"


class TokenExpired(InvalidToken):
    code = "TokenExpired"


class InvalidAudience(InvalidToken):
    code = "InvalidAudience"


class AuthorizationFailed(RequestRejected):
    code = "InvalidAuthorization"


class OperationFailed(AuthorizationFailed):
    code = "OperationFailed"


class InactiveCustomer(RequestRejected):
    code = "InactiveCustomer"


class PayloadTooLarge(RequestRejected):
    code = "RequestEntityTooLarge"


class ContentLengthLimitExceeded(PayloadTooLarge):
    code = "ContentLengthLimitExceeded"


class TooManyRequests(RequestRejected):
    """Refused for now, not for good: retrying after `retry_after_seconds` will be accepted."""

    code = "TooManyRequests"
    DEFAULT_RETRY_AFTER_SECONDS: ClassVar[int] = 1

    def __init__(
        self, message: str, *, retry_after_seconds: int | None = None, workspace_id: str | None = None
    ) -> None:
        super().__init__(message, workspace_id=workspace_id)
        self.retry_after_seconds = max(1, retry_after_seconds or self.DEFAULT_RETRY_AFTER_SECONDS)


class DailyCapExceeded(TooManyRequests):
    code = "DailyCapExceeded"


class ServiceUnavailable(SluiceError):
    """A dependency failed; nothing was acknowledged, the caller should retry after a while."""

    code = "ServiceUnavailable"
    DEFAULT_RETRY_AFTER_SECONDS: ClassVar[int] = 30

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds or self.DEFAULT_RETRY_AFTER_SECONDS)


class StorageUnavailable(ServiceUnavailable):
    pass


class SecretStoreUnavailable(ServiceUnavailable):
    pass


class DatabaseUnavailable(ServiceUnavailable):
    pass


class TokenKeysUnavailable(ServiceUnavailable):
    pass


class StorageRejected(SluiceError):
    code = "StorageRejected"


class SecretStoreRejected(SluiceError):
    code = "SecretStoreRejected"


class DatabaseError(SluiceError):
    code = "DatabaseError"


class CorruptBlob(SluiceError):
    """Processing moves such a blob to quarantine/ (shared.processing) instead of retrying it."""

    code = "CorruptBlob"


class RetentionIncomplete(SluiceError):
    code = "RetentionIncomplete"

    def __init__(self, message: str, *, reports: list[Any] | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []


class DiagnosticsIncomplete(SluiceError):
    """Raised after every source had its turn, so the timer's invocation shows failed."""

    code = "DiagnosticsIncomplete"

    def __init__(self, message: str, *, reports: list[Any] | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []


class Conflict(SluiceError):
    code = "Conflict"


class BlobAlreadyExists(Conflict):
    code = "BlobAlreadyExists"


class WorkspaceChanged(Conflict):
    """A conditional write of a registry entry lost to a write made since the entry was read."""

    code = "WorkspaceChanged"


class NotFound(SluiceError):
    code = "NotFound"


class WorkspaceNotFound(NotFound):
    code = "WorkspaceNotFound"


class AgentNotFound(NotFound):
    code = "AgentNotFound"


class BlobNotFound(NotFound):
    code = "BlobNotFound"


class DataCollectionRuleNotFound(NotFound):
    code = "DataCollectionRuleNotFound"


class ConfigurationError(SluiceError):
    code = "ConfigurationError"


# The one table from error class to HTTP status; the most specific class on the MRO wins.
HTTP_STATUS: dict[type[SluiceError], int] = {
    SluiceError: 500,
    RequestRejected: 400,
    BadRequest: 400,
    InvalidToken: 401,
    AuthorizationFailed: 403,
    InactiveCustomer: 403,
    PayloadTooLarge: 413,
    TooManyRequests: 429,
    Conflict: 409,
    NotFound: 404,
    ServiceUnavailable: 503,
}


def http_status(error: SluiceError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
