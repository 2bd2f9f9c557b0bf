"""Mapping between Azure Functions HTTP objects and the core: requests in, errors and results out.
Error bodies use the Data Collector API's shape, `{"Error": code, "Message": text}`, plus the code in
`x-ms-error-code` as Azure Monitor's APIs send it."""

from __future__ import annotations

import logging

import azure.functions as func
import orjson

from shared.errors import ServiceUnavailable, SluiceError, http_status
from shared.ingest import IngestRequest

log = logging.getLogger("sluice.http")


def ingest_request(req: func.HttpRequest) -> IngestRequest:
    return IngestRequest(headers=req.headers, params=req.params, body=req.get_body(), url=req.url)


def json_response(document: object, *, status_code: int = 200) -> func.HttpResponse:
    return func.HttpResponse(orjson.dumps(document), status_code=status_code, mimetype="application/json")


def error_response(error: SluiceError) -> func.HttpResponse:
    headers = {"x-ms-error-code": error.code}
    if isinstance(error, ServiceUnavailable) and error.retry_after_seconds:
        headers["Retry-After"] = str(error.retry_after_seconds)
    return func.HttpResponse(
        orjson.dumps({"Error": error.code, "Message": error.message}),
        status_code=http_status(error),
        headers=headers,
        mimetype="application/json",
    )


def unexpected_error_response(error: Exception) -> func.HttpResponse:
    """A bug, not a refusal: logged with its traceback; the caller gets a 500 and retries."""
    log.exception("unhandled error: %s", type(error).__name__)
    return func.HttpResponse(
        orjson.dumps({"Error": "InternalServerError", "Message": "An internal error occurred."}),
        status_code=500,
        headers={"x-ms-error-code": "InternalServerError"},
        mimetype="application/json",
    )
