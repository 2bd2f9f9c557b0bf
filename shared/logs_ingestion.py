"""Ingest through Azure Monitor's Logs Ingestion API, `POST /dataCollectionRules/{immutable id}/streams/
{stream}?api-version=2023-01-01`, as the unmodified `azure.monitor.ingestion.LogsIngestionClient` sends it:
a bearer token of the configured issuer, a JSON array of objects (gzip by default), 204 once the raw
blob is committed.

Checks run cheapest first, and nothing unauthenticated costs more than a size check and a signature:
api-version, size as sent (413), stream name (400), token (401), the rule and its grant (403), the
workspace (403), the body (400, 413 decompressed), then the plan's ingestion rate and daily cap (429).
An unknown rule id gets the same 403 as a rule the caller is not granted on, so a token holder cannot
probe which rules exist."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from shared.audit import AuthFailureReason
from shared.dcrs import DataCollectionRule, is_immutable_id, log_type_of_stream
from shared.errors import (
    ContentLengthLimitExceeded,
    DataCollectionRuleNotFound,
    InvalidDataFormat,
    InvalidToken,
    OperationFailed,
    PayloadTooLarge,
    WorkspaceNotFound,
)
from shared.ingest import (
    Accepted,
    Batch,
    IngestRequest,
    ParsedBody,
    Writer,
    check_api_version,
    declared_length,
    parse_body,
    require_active,
)
from shared.telemetry import workspace_log
from shared.tokens import TokenValidator
from shared.workspaces import Workspace

LOGS_INGESTION_API_VERSION = "2023-01-01"
# Azure's limit for one call, "both compressed and uncompressed"; its 413 names it in these words.
MAX_LOGS_BODY_BYTES = 1024 * 1024
_JSON_WHITESPACE = b" \t\r\n"

log = logging.getLogger("sluice.logs_ingestion")


class Rules(Protocol):
    def get_rule(self, immutable_id: str) -> DataCollectionRule:
        """Raises DataCollectionRuleNotFound."""


class Workspaces(Protocol):
    def get_workspace(self, workspace_id: str) -> Workspace:
        """Raises WorkspaceNotFound."""


class LogsIngest:
    def __init__(
        self,
        *,
        tokens: TokenValidator | None,
        rules: Rules,
        workspaces: Workspaces,
        writer: Writer,
        clock: Callable[[], datetime],
    ) -> None:
        self._tokens = tokens
        self._rules = rules
        self._workspaces = workspaces
        self._writer = writer
        self._clock = clock

    def ingest(self, request: IngestRequest, *, immutable_id: str, stream: str) -> Accepted:
        now = self._clock()
        check_api_version(request.params.get("api-version"), supported=LOGS_INGESTION_API_VERSION)
        _check_size(request.headers.get("Content-Length"), len(request.body))
        log_type = log_type_of_stream(stream)
        principal = self._authenticate(request.headers.get("Authorization"))
        rule = self._authorize(immutable_id, principal)
        if stream not in rule.streams:
            workspace_log(log, rule.workspace_id).warning(
                "principal %s refused: stream %s is not on rule %s", principal, stream, rule.immutable_id
            )
            raise OperationFailed(
                f"The data collection rule with immutable Id '{rule.immutable_id}' has no stream '{stream}'."
            )
        workspace = self._active_workspace(rule)
        return self._writer.write(
            Batch(
                workspace=workspace,
                log_type=log_type,
                body=_parse_array(request),
                received_at=now,
                metadata={"dcr_id": rule.immutable_id, "stream": stream, "principal": principal},
            )
        )

    def _authenticate(self, authorization: str | None) -> str:
        if self._tokens is None:
            raise InvalidToken(
                "This deployment accepts no bearer tokens: no token issuer is configured.",
                audit_reason=AuthFailureReason.BAD_TOKEN,
            )
        try:
            return self._tokens.principal(authorization)
        except InvalidToken as error:
            log.warning("bearer token refused: %s: %s", error.code, error.message)
            raise error.tag(AuthFailureReason.BAD_TOKEN) from None

    def _authorize(self, immutable_id: str, principal: str) -> DataCollectionRule:
        rule = self._find_rule(immutable_id)
        if rule is None or not rule.grants(principal):
            log.warning("principal %s refused on data collection rule %s", principal, _loggable(immutable_id))
            raise _no_access(immutable_id).tag(
                AuthFailureReason.BAD_TOKEN, rule.workspace_id if rule is not None else None
            )
        return rule

    def _find_rule(self, immutable_id: str) -> DataCollectionRule | None:
        if not is_immutable_id(immutable_id):
            return None
        try:
            return self._rules.get_rule(immutable_id)
        except DataCollectionRuleNotFound:
            return None

    def _active_workspace(self, rule: DataCollectionRule) -> Workspace:
        try:
            workspace = self._workspaces.get_workspace(rule.workspace_id)
        except WorkspaceNotFound:
            # A rule left behind by a removed workspace leads nowhere: as if there were no rule.
            workspace_log(log, rule.workspace_id).warning("rule %s names no workspace", rule.immutable_id)
            raise _no_access(rule.immutable_id) from None
        return require_active(workspace)


def _no_access(immutable_id: str) -> OperationFailed:
    """Azure's words for a principal without the role on the rule; the id is echoed only when it is
    well formed, so the answer never carries arbitrary input."""
    named = f" with immutable Id '{immutable_id}'" if is_immutable_id(immutable_id) else ""
    return OperationFailed(
        f"The authentication token provided does not have access to ingest data for the data collection "
        f"rule{named}."
    )


def _loggable(immutable_id: str) -> str:
    return immutable_id if is_immutable_id(immutable_id) else "(malformed id)"


def _check_size(content_length: str | None, actual: int) -> None:
    provided = max(declared_length(content_length), actual)
    if provided > MAX_LOGS_BODY_BYTES:
        raise ContentLengthLimitExceeded(
            f"Maximum allowed content length: {MAX_LOGS_BODY_BYTES} bytes (1 MB). "
            f"Provided content length: {provided} bytes."
        )


def _parse_array(request: IngestRequest) -> ParsedBody:
    """The body as sent, or gunzipped within the same 1 MB; a non-empty JSON array of objects (unlike
    the Data Collector API, a lone object is refused: the API's schema is an array)."""
    try:
        body = parse_body(
            request.body,
            content_encoding=request.headers.get("Content-Encoding"),
            max_bytes=MAX_LOGS_BODY_BYTES,
        )
    except PayloadTooLarge:
        raise ContentLengthLimitExceeded(
            f"Maximum allowed content length: {MAX_LOGS_BODY_BYTES} bytes (1 MB), also once decompressed."
        ) from None
    # parse_body accepted a single object or an array of objects; only the array starts with "[".
    if not body.json_bytes.lstrip(_JSON_WHITESPACE).startswith(b"["):
        raise InvalidDataFormat("The body must be a JSON array of objects.")
    return body
