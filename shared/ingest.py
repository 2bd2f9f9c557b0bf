"""Ingest through the HTTP Data Collector API (`POST /api/logs?api-version=2016-04-01`): validate,
authenticate, and commit the body gzip to the workspace's container before acknowledging."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import orjson

from shared import sharedkey
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
from shared.ids import RawBlobName, parse_log_type
from shared.rawstore import MAX_BODY_BYTES, RawStore, gunzip_bounded, gzip_bytes
from shared.telemetry import workspace_log
from shared.workspaces import Workspace, WorkspaceState

DATA_COLLECTOR_API_VERSION = "2016-04-01"
JSON_CONTENT_TYPE = "application/json"
# Header values copied into blob metadata must be short printable ASCII.
MAX_HEADER_VALUE = 1024

log = logging.getLogger("sluice.ingest")


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """An HTTP request as the core sees it. `headers` must look up names case-insensitively."""

    headers: Mapping[str, str]
    params: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Accepted:
    workspace_id: str
    blob_name: str
    record_count: int
    sha256: str


class Directory(Protocol):
    """The part of WorkspaceDirectory that authentication needs."""

    def get_workspace(self, workspace_id: str) -> Workspace: ...

    def get_shared_keys(self, workspace_id: str) -> tuple[bytes, ...]: ...


@dataclass(frozen=True, slots=True)
class ParsedBody:
    json_bytes: bytes
    stored_gzip: bytes
    record_count: int


class DataCollectorIngest:
    def __init__(self, *, directory: Directory, raw_store: RawStore, clock: Callable[[], datetime]) -> None:
        self._directory = directory
        self._raw_store = raw_store
        self._clock = clock

    def ingest(self, request: IngestRequest) -> Accepted:
        headers = request.headers
        now = self._clock()
        _check_api_version(request.params.get("api-version"))
        _check_size(headers.get("Content-Length"), len(request.body))
        credential = sharedkey.parse_authorization(headers.get("Authorization"))
        content_type = _check_content_type(headers.get("Content-Type"))
        log_type = _check_log_type(headers.get("Log-Type"))
        x_ms_date = headers.get("x-ms-date")
        sharedkey.check_date(x_ms_date, now=now)
        assert x_ms_date is not None  # check_date refuses a missing date
        workspace = self._authenticate(
            credential, content_length=len(request.body), content_type=content_type, x_ms_date=x_ms_date
        )
        body = _parse_body(request.body, content_encoding=headers.get("Content-Encoding"))
        metadata = {
            "workspace_id": workspace.workspace_id,
            "log_type": log_type,
            "record_count": str(body.record_count),
            "sha256": hashlib.sha256(body.json_bytes).hexdigest(),
            "content_bytes": str(len(body.json_bytes)),
            "received_at": now.isoformat(),
        }
        for header, key in (
            ("time-generated-field", "time_generated_field"),
            ("x-ms-AzureResourceId", "azure_resource_id"),
        ):
            value = headers.get(header)
            if value:
                metadata[key] = _metadata_value(header, value)
        blob_name = str(RawBlobName.new(now, log_type))
        self._raw_store.put_raw(workspace.workspace_id, blob_name, body.stored_gzip, metadata=metadata)
        workspace_log(log, workspace.workspace_id).info(
            "accepted %d records of %s as %s", body.record_count, log_type, blob_name
        )
        return Accepted(
            workspace_id=workspace.workspace_id,
            blob_name=blob_name,
            record_count=body.record_count,
            sha256=metadata["sha256"],
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
        except WorkspaceNotFound:
            # Same answer as a bad signature: an unauthenticated caller learns nothing about ids.
            workspace_log(log, credential.workspace_id).warning("authentication failed: unknown workspace")
            raise AuthorizationFailed("The signature does not match the workspace key.") from None
        try:
            sharedkey.verify(
                credential,
                self._directory.get_shared_keys(workspace.workspace_id),
                content_length=content_length,
                content_type=content_type,
                x_ms_date=x_ms_date,
            )
        except AuthorizationFailed:
            workspace_log(log, workspace.workspace_id).warning("authentication failed: bad signature")
            raise
        if workspace.state is not WorkspaceState.ACTIVE:
            raise InactiveCustomer("The workspace is not active.")
        return workspace


def _check_api_version(value: str | None) -> None:
    if not value:
        raise MissingApiVersion(
            f"The api-version query parameter is required ({DATA_COLLECTOR_API_VERSION})."
        )
    if value != DATA_COLLECTOR_API_VERSION:
        raise InvalidApiVersion(f"api-version {value!r} is not supported; use {DATA_COLLECTOR_API_VERSION}.")


def _check_size(content_length: str | None, actual: int) -> None:
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if max(declared, actual) > MAX_BODY_BYTES:
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


def _parse_body(raw: bytes, *, content_encoding: str | None) -> ParsedBody:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        json_bytes = gunzip_bounded(raw, max_bytes=MAX_BODY_BYTES)
        stored = raw  # already gzip: stored as sent, no second compression
    elif encoding == "identity":
        json_bytes, stored = raw, b""
    else:
        raise UnsupportedContentType(f"Content-Encoding {encoding[:50]!r} is not supported; use gzip.")
    record_count = count_records(json_bytes)
    return ParsedBody(
        json_bytes=json_bytes, stored_gzip=stored or gzip_bytes(json_bytes), record_count=record_count
    )


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
