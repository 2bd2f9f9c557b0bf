"""SharedKey signing as Microsoft documents it, checked against an independent recipe."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from shared import sharedkey
from shared.errors import AuthorizationFailed, InvalidCustomerId

WORKSPACE = "0c6d2a44-2a3f-4f3e-9c7e-1a2b3c4d5e6f"
KEY = base64.b64encode(b"k" * 64).decode()
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def documented_signature(key_b64: str, length: int, content_type: str, date: str) -> str:
    # The recipe of Microsoft's HTTP Data Collector API sample, written out independently.
    string_to_hash = f"POST\n{length}\n{content_type}\nx-ms-date:{date}\n/api/logs"
    digest = hmac.new(base64.b64decode(key_b64), string_to_hash.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_given_documented_recipe_when_signing_then_header_matches() -> None:
    date = sharedkey.rfc1123(NOW)
    header = sharedkey.authorization_header(
        WORKSPACE, KEY, content_length=42, content_type="application/json", x_ms_date=date
    )
    assert header == f"SharedKey {WORKSPACE}:{documented_signature(KEY, 42, 'application/json', date)}"


def test_given_either_key_when_verifying_then_accepted() -> None:
    date = sharedkey.rfc1123(NOW)
    other = base64.b64encode(b"o" * 64).decode()
    header = sharedkey.authorization_header(
        WORKSPACE, other, content_length=3, content_type="application/json", x_ms_date=date
    )
    credential = sharedkey.parse_authorization(header)
    sharedkey.verify(
        credential,
        [base64.b64decode(KEY), base64.b64decode(other)],
        content_length=3,
        content_type="application/json",
        x_ms_date=date,
    )


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        f"SharedKey {WORKSPACE}",
        f"SharedKey {WORKSPACE}:",
        f"SharedKey {WORKSPACE}:%%%",
    ],
)
def test_given_malformed_authorization_when_parsing_then_refused(header: str | None) -> None:
    with pytest.raises(AuthorizationFailed):
        sharedkey.parse_authorization(header)


def test_given_non_guid_workspace_when_parsing_then_invalid_customer_id() -> None:
    with pytest.raises(InvalidCustomerId):
        sharedkey.parse_authorization("SharedKey ../../etc:YWJj")


@pytest.mark.parametrize("offset", [timedelta(minutes=-16), timedelta(minutes=16)])
def test_given_date_beyond_skew_when_checking_then_refused(offset: timedelta) -> None:
    with pytest.raises(AuthorizationFailed, match="15 minutes"):
        sharedkey.check_date(sharedkey.rfc1123(NOW + offset), now=NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=-14), timedelta(0), timedelta(minutes=14)])
def test_given_date_within_skew_when_checking_then_accepted(offset: timedelta) -> None:
    sharedkey.check_date(sharedkey.rfc1123(NOW + offset), now=NOW)


@pytest.mark.parametrize("value", [None, "", "yesterday", "Sun, 22 Nov 2026 12:00:00"])
def test_given_missing_or_bad_date_when_checking_then_refused(value: str | None) -> None:
    with pytest.raises(AuthorizationFailed):
        sharedkey.check_date(value, now=NOW)


def test_given_several_keys_when_verifying_then_every_key_is_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(sharedkey.hmac, "compare_digest", counting)
    date = sharedkey.rfc1123(NOW)
    header = sharedkey.authorization_header(
        WORKSPACE, KEY, content_length=3, content_type="application/json", x_ms_date=date
    )
    keys = [base64.b64decode(KEY), b"x" * 64]

    sharedkey.verify(
        sharedkey.parse_authorization(header),
        keys,
        content_length=3,
        content_type="application/json",
        x_ms_date=date,
    )

    assert len(calls) == len(keys), "the first match must not stop the comparison of the others"


def test_given_wrong_key_when_verifying_then_refused() -> None:
    date = sharedkey.rfc1123(NOW)
    header = sharedkey.authorization_header(
        WORKSPACE, KEY, content_length=3, content_type="application/json", x_ms_date=date
    )
    with pytest.raises(AuthorizationFailed, match="does not match"):
        sharedkey.verify(
            sharedkey.parse_authorization(header),
            [b"w" * 64],
            content_length=3,
            content_type="application/json",
            x_ms_date=date,
        )


@pytest.mark.parametrize(
    "value", ["Sun, 22 Nov 2026 07:00:00 -0500", "2026-11-22T12:00:00Z", "Sun, 22 Nov 2026 12:00:00 UTC"]
)
def test_given_date_not_in_rfc1123_gmt_when_checking_then_refused(value: str) -> None:
    with pytest.raises(AuthorizationFailed, match="RFC 1123"):
        sharedkey.check_date(value, now=NOW)
