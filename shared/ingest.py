"""Ingest through the HTTP Data Collector API (`POST /api/logs?api-version=2016-04-01`): validate,
authenticate, admit within the plan's limits, and commit the body gzip to the workspace's container
before acknowledging."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import orjson

from shared import sharedkey
from shared.audit import AuthFailureReason
from shared.errors import (
    AuthorizationFailed,
    BadRequest,
    InactiveCustomer,
    InvalidApiVersion,
    InvalidDataFormat,
    MissingApiVersion,
    MissingContentType,
    MissingLogType,
    PayloadTooLarge,
    UnsupportedContentType,
    WorkspaceNotFound,
)
from shared.ids import RawBlobName, parse_log_type, parse_workspace_id
from shared.rawstore import MAX_BODY_BYTES, RawStore, gunzip_bounded, gzip_bytes
from shared.telemetry import workspace_log
from shared.workspaces import Workspace, WorkspaceState

if TYPE_CHECKING:  # the certificate checks pull in PyJWT and cryptography: only AgentIngest needs them
    from shared.certauth import CertificateAuthenticator
    from shared.limits import IngestLimits

DATA_COLLECTOR_API_VERSION = "2016-04-01"
JSON_CONTENT_TYPE = "application/json"
# Header values copied into blob metadata must be short printable ASCII.
MAX_HEADER_VALUE = 1024

log = logging.getLogger("sluice.ingest")
# Random keys no signature can match, verified against for unknown workspaces (see _authenticate).
_DECOY_KEYS = (os.urandom(64), os.urandom(64))


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """An HTTP request as the core sees it. `headers` must look up names case-insensitively; `url` is
    the full request URL (the audience of client assertions)."""

    headers: Mapping[str, str]
    params: Mapping[str, str]
    body: bytes
    url: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    workspace_id: str
    blob_name: str
    record_count: int
    sha256: str


class Directory(Protocol):
    """The part of WorkspaceDirectory that authentication needs."""

    def get_workspace(self, workspace_id: str) -> Workspace: ...

    def list_shared_keys(self, workspace_id: str) -> tuple[bytes, ...]: ...


@dataclass(frozen=True, slots=True)
class ParsedBody:
    json_bytes: bytes
    stored_gzip: bytes
    record_count: int


@dataclass(frozen=True, slots=True)
class CollectorHeaders:
    """What the Data Collector API's headers say, validated (the same for every auth scheme)."""

    log_type: str
    content_type: str
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class Batch:
    """One post, authenticated and validated, on its way to one raw blob."""

    workspace: Workspace
    log_type: str
    body: ParsedBody
    received_at: datetime
    metadata: Mapping[str, str]


class Writer(Protocol):
    def write(self, batch: Batch) -> Accepted:
        """Commits the batch as one raw blob; returns only once the blob is durable."""


class RawWriter:
    """The Writer onto the raw store."""

    def __init__(self, raw_store: RawStore) -> None:
        self._raw_store = raw_store

    def write(self, batch: Batch) -> Accepted:
        workspace_id, log_type, body = batch.workspace.workspace_id, batch.log_type, batch.body
        sha256 = hashlib.sha256(body.stored_gzip).hexdigest()  # what is stored: processing checks it
        blob_metadata = {
            **batch.metadata,
            "workspace_id": workspace_id,
            "log_type": log_type,
            "record_count": str(body.record_count),
            "sha256": sha256,
            "content_bytes": str(len(body.json_bytes)),
            "received_at": batch.received_at.isoformat(),
        }
        blob_name = str(RawBlobName.new(batch.received_at, log_type))
        self._raw_store.put_raw(workspace_id, blob_name, body.stored_gzip, metadata=blob_metadata)
        workspace_log(log, workspace_id).info(
            "accepted %d records of %s as %s", body.record_count, log_type, blob_name
        )
        return Accepted(
            workspace_id=workspace_id, blob_name=blob_name, record_count=body.record_count, sha256=sha256
        )


class LimitedWriter:
    """A Writer behind the workspace plan's ingestion rate and daily cap (shared.limits): a batch is
    admitted, counting its JSON bytes decompressed, before it is written."""

    def __init__(self, writer: Writer, limits: IngestLimits) -> None:
        self._writer = writer
        self._limits = limits

    def write(self, batch: Batch) -> Accepted:
        workspace = batch.workspace
        with self._limits.admitted(
            workspace.workspace_id, workspace.plan, size=len(batch.body.json_bytes), now=batch.received_at
        ):
            return self._writer.write(batch)


def collector_headers(request: IngestRequest) -> CollectorHeaders:
    headers = request.headers
    check_api_version(request.params.get("api-version"), supported=DATA_COLLECTOR_API_VERSION)
    _check_size(headers.get("Content-Length"), len(request.body))
    content_type = _check_content_type(headers.get("Content-Type"))
    log_type = _check_log_type(headers.get("Log-Type"))
    metadata = {}
    for header, key in (
        ("time-generated-field", "time_generated_field"),
        ("x-ms-AzureResourceId", "azure_resource_id"),
    ):
        value = headers.get(header)
        if value:
            metadata[key] = _metadata_value(header, value)
    return CollectorHeaders(log_type=log_type, content_type=content_type, metadata=metadata)


class DataCollectorIngest:
    """`POST /api/logs`: the HTTP Data Collector API with its SharedKey signature."""

    def __init__(self, *, directory: Directory, writer: Writer, clock: Callable[[], datetime]) -> None:
        self._directory = directory
        self._writer = writer
        self._clock = clock

    def ingest(self, request: IngestRequest) -> Accepted:
        now = self._clock()
        credential = sharedkey.parse_authorization(request.headers.get("Authorization"))
        collected = collector_headers(request)
        x_ms_date = request.headers.get("x-ms-date")
        sharedkey.check_date(x_ms_date, now=now)
        assert x_ms_date is not None  # check_date refuses a missing date
        workspace = self._authenticate(
            credential,
            content_length=len(request.body),
            content_type=collected.content_type,
            x_ms_date=x_ms_date,
        )
        return self._writer.write(
            Batch(
                workspace=workspace,
                log_type=collected.log_type,
                body=parse_body(request.body, content_encoding=request.headers.get("Content-Encoding")),
                received_at=now,
                metadata=collected.metadata,
            )
        )

    def _authenticate(
        self,
        credential: sharedkey.SharedKeyCredential,
        *,
        content_length: int,
        content_type: str,
        x_ms_date: str,
    ) -> Workspace:
        try:
            workspace = self._directory.get_workspace(credential.workspace_id)
            keys = self._directory.list_shared_keys(workspace.workspace_id)
        except WorkspaceNotFound:
            # Same answer, and the same HMAC work, as a bad signature: the caller learns nothing.
            workspace_log(log, credential.workspace_id).warning("authentication failed: unknown workspace")
            workspace, keys = None, _DECOY_KEYS
        try:
            sharedkey.verify(
                credential,
                keys,
                content_length=content_length,
                content_type=content_type,
                x_ms_date=x_ms_date,
            )
        except AuthorizationFailed as error:
            if workspace is None:
                raise error.tag(AuthFailureReason.UNKNOWN_WORKSPACE) from None
            workspace_log(log, workspace.workspace_id).warning("authentication failed: bad signature")
            raise error.tag(AuthFailureReason.BAD_SIGNATURE, workspace.workspace_id) from None
        assert workspace is not None  # the decoy keys match no signature
        return require_active(workspace)


class AgentIngest:
    """`POST /api/workspaces/{workspace_id}/logs`: the Data Collector API's headers and body, with the
    agent's certificate (forwarded client certificate or client assertion) instead of SharedKey."""

    def __init__(
        self,
        *,
        directory: Directory,
        certificates: CertificateAuthenticator,
        writer: Writer,
        clock: Callable[[], datetime],
    ) -> None:
        self._directory = directory
        self._certificates = certificates
        self._writer = writer
        self._clock = clock

    def ingest(self, request: IngestRequest, *, workspace_id: str) -> Accepted:
        now = self._clock()
        workspace_id = parse_workspace_id(workspace_id)
        collected = collector_headers(request)
        try:
            agent = self._certificates.authenticate(
                workspace_id=workspace_id, headers=request.headers, url=request.url, body=request.body
            )
        except AuthorizationFailed as error:
            workspace_log(log, workspace_id).warning("authentication failed: %s", error.message)
            raise
        try:
            workspace = require_active(self._directory.get_workspace(workspace_id))
        except WorkspaceNotFound:
            raise AuthorizationFailed("The certificate is not registered to this workspace.") from None
        return self._writer.write(
            Batch(
                workspace=workspace,
                log_type=collected.log_type,
                body=parse_body(request.body, content_encoding=request.headers.get("Content-Encoding")),
                received_at=now,
                metadata={**collected.metadata, "agent_id": agent.agent_id},
            )
        )


def require_active(workspace: Workspace) -> Workspace:
    if workspace.state is not WorkspaceState.ACTIVE:
        raise InactiveCustomer("The workspace is not active.")
    return workspace


def check_api_version(value: str | None, *, supported: str) -> None:
    if not value:
        raise MissingApiVersion(f"The api-version query parameter is required ({supported}).")
    if value != supported:
        raise InvalidApiVersion(f"api-version {value[:50]!r} is not supported; use {supported}.")


def declared_length(content_length: str | None) -> int:
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    return (
        int(content_length) if content_length and content_length.isascii() and content_length.isdigit() else 0
    )


def _check_size(content_length: str | None, actual: int) -> None:
    if max(declared_length(content_length), actual) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body exceeds the {MAX_BODY_BYTES} byte limit of one post.")


def _check_content_type(value: str | None) -> str:
    if not value:
        raise MissingContentType("The Content-Type header is required (application/json).")
    if value.split(";", 1)[0].strip().lower() != JSON_CONTENT_TYPE:
        raise UnsupportedContentType(f"Content-Type {value[:100]!r} is not supported; use application/json.")
    return value


def _check_log_type(value: str | None) -> str:
    if not value:
        raise MissingLogType("The Log-Type header is required.")
    return parse_log_type(value)


def _metadata_value(header: str, value: str) -> str:
    if len(value) > MAX_HEADER_VALUE or not value.isascii() or not value.isprintable():
        raise BadRequest(
            f"The {header} header must be printable ASCII of at most {MAX_HEADER_VALUE} characters."
        )
    return value


def parse_body(raw: bytes, *, content_encoding: str | None, max_bytes: int = MAX_BODY_BYTES) -> ParsedBody:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        json_bytes = gunzip_bounded(raw, max_bytes=max_bytes)
        return ParsedBody(json_bytes=json_bytes, stored_gzip=raw, record_count=count_records(json_bytes))
    if encoding == "identity":
        record_count = count_records(raw)  # validate before spending CPU on compression
        return ParsedBody(json_bytes=raw, stored_gzip=gzip_bytes(raw), record_count=record_count)
    raise UnsupportedContentType(f"Content-Encoding {encoding[:50]!r} is not supported; use gzip.")


def count_records(json_bytes: bytes) -> int:
    """A body is one JSON object or a non-empty array of objects."""
    try:
        document = orjson.loads(json_bytes)
    except orjson.JSONDecodeError as error:
        raise InvalidDataFormat(f"The body is not valid JSON: {error}.") from None
    if isinstance(document, dict):
        return 1
    if not isinstance(document, list) or not document:
        raise InvalidDataFormat("The body must be a JSON object or a non-empty array of objects.")
    if not all(isinstance(record, dict) for record in document):
        raise InvalidDataFormat("Every element of the JSON array must be an object.")
    return len(document)
