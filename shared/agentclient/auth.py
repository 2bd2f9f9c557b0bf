"""How each post is authenticated, one class per mode (config.AuthMode): the URL it goes to and the
headers that prove who sends it. The checks on the other side are shared.certauth (certificates) and
shared.sharedkey (SharedKey); their helpers build what they verify, so both sides cannot drift."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from shared import sharedkey
from shared.agents import thumbprint
from shared.certauth import ASSERTION_MAX_LIFETIME, BODY_HASH_CLAIM, assertion_audience, body_sha256
from shared.ingest import DATA_COLLECTOR_API_VERSION, JSON_CONTENT_TYPE

# An assertion is used the moment it is made; half the allowed lifetime leaves room for clock skew.
ASSERTION_LIFETIME = ASSERTION_MAX_LIFETIME / 2
ASSERTION_ALGORITHM = "ES256"  # the agent's key is P-256 (see enrollment.new_credentials)


class Authenticator(Protocol):
    @property
    def url(self) -> str:
        """Where batches are posted."""

    def headers(self, body: bytes, *, now: datetime) -> dict[str, str]:
        """The authentication headers for posting exactly `body` at `now`."""


def agent_logs_url(endpoint: str, workspace_id: str) -> str:
    return f"{endpoint}/api/workspaces/{workspace_id}/logs?api-version={DATA_COLLECTOR_API_VERSION}"


@dataclass(frozen=True, slots=True)
class ClientAssertion:
    """`Authorization: Bearer <JWT>` signed with the agent's key; a new one (new jti) for every post,
    retries included, since the service accepts each assertion once."""

    url: str
    agent_id: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def headers(self, body: bytes, *, now: datetime) -> dict[str, str]:
        issued_at = int(now.timestamp())
        claims = {
            "iss": self.agent_id,
            "sub": self.agent_id,
            "aud": assertion_audience(self.url),
            "iat": issued_at,
            "exp": issued_at + int(ASSERTION_LIFETIME.total_seconds()),
            "jti": uuid.uuid4().hex,
            BODY_HASH_CLAIM: body_sha256(body),
        }
        x5t = base64.urlsafe_b64encode(bytes.fromhex(thumbprint(self.certificate))).rstrip(b"=")
        token = jwt.encode(
            claims, self.key, algorithm=ASSERTION_ALGORITHM, headers={"x5t#S256": x5t.decode("ascii")}
        )
        return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """Nothing in the headers: the TLS handshake presents the certificate (see HttpsTransport)."""

    url: str

    def headers(self, body: bytes, *, now: datetime) -> dict[str, str]:
        return {}


@dataclass(frozen=True, slots=True)
class SharedKey:
    """The HTTP Data Collector API's own scheme, to `/api/logs`, signed over the body's length."""

    endpoint: str
    workspace_id: str
    key_b64: str

    @property
    def url(self) -> str:
        return f"{self.endpoint}{sharedkey.RESOURCE}?api-version={DATA_COLLECTOR_API_VERSION}"

    def headers(self, body: bytes, *, now: datetime) -> dict[str, str]:
        x_ms_date = sharedkey.rfc1123(now)
        authorization = sharedkey.authorization_header(
            self.workspace_id,
            self.key_b64,
            content_length=len(body),
            content_type=JSON_CONTENT_TYPE,
            x_ms_date=x_ms_date,
        )
        return {"Authorization": authorization, "x-ms-date": x_ms_date}
