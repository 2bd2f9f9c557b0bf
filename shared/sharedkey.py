"""SharedKey authentication exactly as Azure Monitor's HTTP Data Collector API defines it:

StringToSign = "POST\\n{Content-Length}\\n{Content-Type}\\nx-ms-date:{x-ms-date}\\n/api/logs"
Authorization: SharedKey {workspace id}:{base64(HMAC-SHA256(base64decode(key), UTF8(StringToSign)))}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from shared.audit import AuthFailureReason
from shared.errors import AuthorizationFailed
from shared.ids import parse_workspace_id

RESOURCE = "/api/logs"
MAX_CLOCK_SKEW = timedelta(minutes=15)
SCHEME = "SharedKey"
RFC1123_FORMAT = "%a, %d %b %Y %H:%M:%S GMT"


def string_to_sign(*, content_length: int, content_type: str, x_ms_date: str) -> str:
    return f"POST\n{content_length}\n{content_type}\nx-ms-date:{x_ms_date}\n{RESOURCE}"


def signature(key: bytes, *, content_length: int, content_type: str, x_ms_date: str) -> str:
    message = string_to_sign(content_length=content_length, content_type=content_type, x_ms_date=x_ms_date)
    return base64.b64encode(hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()).decode("ascii")


def decode_key(key_b64: str) -> bytes:
    return base64.b64decode(key_b64, validate=True)


def rfc1123(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def authorization_header(
    workspace_id: str, key_b64: str, *, content_length: int, content_type: str, x_ms_date: str
) -> str:
    sig = signature(
        decode_key(key_b64), content_length=content_length, content_type=content_type, x_ms_date=x_ms_date
    )
    return f"{SCHEME} {workspace_id}:{sig}"


@dataclass(frozen=True, slots=True)
class SharedKeyCredential:
    workspace_id: str
    signature: bytes


def parse_authorization(header: str | None) -> SharedKeyCredential:
    try:
        return _parse_authorization(header)
    except AuthorizationFailed as error:
        raise error.tag(AuthFailureReason.BAD_SIGNATURE) from None


def _parse_authorization(header: str | None) -> SharedKeyCredential:
    """Splits `SharedKey {workspace}:{signature}`; a malformed workspace id is InvalidCustomerId."""
    if not header:
        raise AuthorizationFailed("The Authorization header is missing.")
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        raise AuthorizationFailed("An invalid scheme was specified in the Authorization header.")
    workspace, sep, sig = rest.strip().partition(":")
    if not sep or not sig:
        raise AuthorizationFailed("The Authorization header must be 'SharedKey {workspace id}:{signature}'.")
    workspace_id = parse_workspace_id(workspace)
    try:
        raw_sig = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise AuthorizationFailed("The signature in the Authorization header is not base64.") from None
    return SharedKeyCredential(workspace_id=workspace_id, signature=raw_sig)


def check_date(x_ms_date: str | None, *, now: datetime) -> None:
    """RFC 1123 in GMT, as the API documents it (`Sun, 22 Nov 2026 13:37:05 GMT`), within 15 minutes."""
    reason = AuthFailureReason.BAD_DATE
    if not x_ms_date:
        raise AuthorizationFailed("The x-ms-date header is missing.", audit_reason=reason)
    try:
        sent = datetime.strptime(x_ms_date, RFC1123_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise AuthorizationFailed(
            "The x-ms-date header must be an RFC 1123 date in GMT.", audit_reason=reason
        ) from None
    if abs(now - sent) > MAX_CLOCK_SKEW:
        raise AuthorizationFailed(
            "The x-ms-date header is more than 15 minutes away from the server's time.", audit_reason=reason
        )


def verify(
    credential: SharedKeyCredential,
    keys: Iterable[bytes],
    *,
    content_length: int,
    content_type: str,
    x_ms_date: str,
) -> None:
    """Accepts the signature if it matches any current key (primary or secondary during rotation).
    Every key is compared, in constant time, so timing does not tell which one matched."""
    message = string_to_sign(
        content_length=content_length, content_type=content_type, x_ms_date=x_ms_date
    ).encode("utf-8")
    matched = False
    for key in keys:
        expected = hmac.new(key, message, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, credential.signature)
    if not matched:
        raise AuthorizationFailed(
            "The signature does not match the workspace key.", audit_reason=AuthFailureReason.BAD_SIGNATURE
        )
