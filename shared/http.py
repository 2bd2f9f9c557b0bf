"""Mapping between Azure Functions HTTP objects and the core: requests in, errors and results out.
Error bodies take the shape of the API the route imitates: the Data Collector API's
`{"Error": code, "Message": text}`, or the Logs Ingestion API's (Azure Core's)
`{"error": {"code": code, "message": text}}`; either way the code is also in `x-ms-error-code` as Azure
Monitor's APIs send it, and the status comes from shared.errors.http_status."""

from __future__ import annotations

import logging
from collections.abc import Callable

import azure.functions as func
import orjson

from shared.errors import RequestRejected, ServiceUnavailable, SluiceError, http_status
from shared.ingest import IngestRequest

log = logging.getLogger("sluice.http")


def ingest_request(req: func.HttpRequest) -> IngestRequest:
    return IngestRequest(headers=req.headers, params=req.params, body=req.get_body(), url=req.url)


def json_response(document: object, *, status_code: int = 200) -> func.HttpResponse:
    return func.HttpResponse(orjson.dumps(document), status_code=status_code, mimetype="application/json")


def error_response(error: SluiceError) -> func.HttpResponse:
    """The Data Collector API's shape (`/api/logs` and the agent routes)."""
    return _error(error, lambda code, message: {"Error": code, "Message": message})


def logs_ingestion_error_response(error: SluiceError) -> func.HttpResponse:
    """The Logs Ingestion API's shape, Azure Core's ErrorResponse, which its SDKs parse."""
    return _error(error, lambda code, message: {"error": {"code": code, "message": message}})


INTERNAL_ERROR_CODE = "InternalServerError"
INTERNAL_ERROR_MESSAGE = "An internal error occurred."


def _error(error: SluiceError, shape: Callable[[str, str], dict[str, object]]) -> func.HttpResponse:
    if isinstance(error, RequestRejected) and error.audit_reason:
        _record_auth_failure(error.audit_reason, error.workspace_id)
    status = http_status(error)
    code, message = error.code, error.message
    if status >= 500 and not isinstance(error, ServiceUnavailable):
        # A misconfiguration or a bug: the detail (setting names, storage answers) is for the log only.
        log.error("internal error %s: %s", error.code, error.message)
        code, message = INTERNAL_ERROR_CODE, INTERNAL_ERROR_MESSAGE
    headers = {"x-ms-error-code": code}
    if error.retry_after_seconds:  # 503 and 429: when trying again will be worth it
        headers["Retry-After"] = str(error.retry_after_seconds)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"  # RFC 6750: a 401 names the scheme it wants
    return func.HttpResponse(
        orjson.dumps(shape(code, message)), status_code=status, headers=headers, mimetype="application/json"
    )


def _record_auth_failure(reason: str, workspace_id: str | None) -> None:
    """Into the audit log, aggregated per workspace and window; never fails or slows the answer."""
    from shared.audit import AuthFailureReason
    from shared.runtime import services

    try:
        services().auth_failures.record(workspace_id, AuthFailureReason(reason))
    except Exception:
        log.exception("could not record an authentication failure")


def unexpected_error_response(
    error: Exception, render: Callable[[SluiceError], func.HttpResponse] = error_response
) -> func.HttpResponse:
    """A bug, not a refusal: logged with its traceback; the caller gets a 500 (in the route's error
    shape, `render`) and retries."""
    log.exception("unhandled error: %s", type(error).__name__)
    return render(SluiceError(INTERNAL_ERROR_MESSAGE))
