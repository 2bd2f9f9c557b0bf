"""Requests and events shaped as the Azure Functions host hands them to the handlers.

The SharedKey signature is computed here from Microsoft's documented recipe for the HTTP Data
Collector API, independently of shared.sharedkey, so the tests check the service against the spec:
    base64(HMAC-SHA256(base64decode(key), "POST\\n{len}\\n{content-type}\\nx-ms-date:{date}\\n/api/logs"))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import azure.functions as func

API_VERSION = "2016-04-01"
URL = "https://127.0.0.1/api/logs"
RESOURCE = "/api/logs"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"


def rfc1123(moment: datetime) -> str:
    """RFC 1123 in GMT, the x-ms-date format (English names regardless of locale)."""
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    utc = moment.astimezone(UTC)
    return (
        f"{days[utc.weekday()]}, {utc.day:02d} {months[utc.month - 1]} {utc.year} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} GMT"
    )


def documented_signature(key_b64: str, *, content_length: int, content_type: str, x_ms_date: str) -> str:
    string_to_hash = f"POST\n{content_length}\n{content_type}\nx-ms-date:{x_ms_date}\n{RESOURCE}"
    digest = hmac.new(base64.b64decode(key_b64), string_to_hash.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_request(
    *,
    workspace_id: str,
    key_b64: str,
    body: bytes,
    log_type: str | None = "Sluice_CL",
    content_type: str | None = "application/json",
    date: datetime | None = None,
    params: Mapping[str, str] | None = None,
    extra_headers: Mapping[str, str] | None = None,
    sign_content_length: int | None = None,
) -> func.HttpRequest:
    """A Data Collector post as an unmodified client sends it. `None` leaves a header out; the
    signature covers the content type actually sent (empty when there is none)."""
    x_ms_date = rfc1123(date or datetime.now(UTC))
    signature = documented_signature(
        key_b64,
        content_length=len(body) if sign_content_length is None else sign_content_length,
        content_type=content_type or "",
        x_ms_date=x_ms_date,
    )
    headers = {
        "Authorization": f"SharedKey {workspace_id}:{signature}",
        "x-ms-date": x_ms_date,
        "Content-Length": str(len(body)),
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    if log_type is not None:
        headers["Log-Type"] = log_type
    headers.update(extra_headers or {})
    return func.HttpRequest(
        method="POST",
        url=URL,
        params=dict({"api-version": API_VERSION} if params is None else params),
        headers=headers,
        body=body,
    )


def blob_created_event(
    container: str, blob_name: str, *, content_length: int = 0, event_type: str = BLOB_CREATED
) -> func.EventGridEvent:
    """An Event Grid `Microsoft.Storage.BlobCreated` event as the eventGridTrigger binding builds it."""
    return func.EventGridEvent(
        id=str(uuid.uuid4()),
        data={
            "api": "PutBlob",
            "contentType": "application/json",
            "contentLength": content_length,
            "blobType": "BlockBlob",
            "url": f"http://127.0.0.1/devstoreaccount1/{container}/{blob_name}",
        },
        topic="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/sluice/providers/"
        "Microsoft.Storage/storageAccounts/sluice",
        subject=f"/blobServices/default/containers/{container}/blobs/{blob_name}",
        event_type=event_type,
        event_time=datetime.now(UTC),
        data_version="",
    )


def timer_request() -> func.TimerRequest:
    from azure.functions.timer import TimerRequest

    return TimerRequest(past_due=False)
