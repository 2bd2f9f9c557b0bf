"""An agent's credentials as an agent makes them: a key pair with a self-signed certificate (built by
the agent client's own builder, here with dates of the test's choosing), and the client assertion it
signs for one request. Written from the documented protocol, independently of shared.certauth, so the
tests check the service against it:

    header  alg = ES256 (P-256 key), x5t#S256 = base64url(sha256(certificate DER)), unpadded
    claims  iss = sub = the agent id, aud = the request URL without its query,
            iat, exp (exp - iat at most 10 minutes), jti (8 to 128 URL-safe characters, used once),
            body_sha256 = hex sha256 of the body exactly as sent
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.agentclient.enrollment import self_signed_certificate

ASSERTION_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class AgentCredentials:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")

    @property
    def certificate_der_b64(self) -> str:
        """The certificate as App Service forwards it in X-ARR-ClientCert."""
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")

    @property
    def thumbprint(self) -> str:
        """sha256 of the DER, hex: what enrollment answers as `thumbprint`."""
        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()

    def write_files(self, directory: Path) -> tuple[Path, Path]:
        """Certificate and key files, for ssl.SSLContext.load_cert_chain (which reads only files)."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = directory / "agent.pem", directory / "agent-key.pem"
        cert_file.write_text(self.certificate_pem, encoding="ascii")
        key_file.write_text(self.key_pem, encoding="ascii")
        key_file.chmod(0o600)
        return cert_file, key_file


def new_agent_credentials(
    name: str = "agent", *, not_before: datetime | None = None, not_after: datetime | None = None
) -> AgentCredentials:
    """A P-256 key and a self-signed certificate for it, valid from a minute ago for a year unless
    the dates are given."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed_certificate(
        key,
        common_name=name,
        not_before=not_before or now - timedelta(minutes=1),
        not_after=not_after or now + timedelta(days=365),
    )
    return AgentCredentials(key=key, certificate=certificate)


def audience(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def client_assertion(
    credentials: AgentCredentials,
    *,
    agent_id: str,
    url: str,
    body: bytes,
    issued_at: datetime | None = None,
    lifetime: timedelta = ASSERTION_LIFETIME,
    jti: str | None = None,
) -> str:
    """`Authorization: Bearer <this>` for a POST of `body` to `url`."""
    iat = issued_at or datetime.now(UTC)
    thumbprint = hashlib.sha256(credentials.certificate.public_bytes(serialization.Encoding.DER)).digest()
    claims = {
        "iss": agent_id,
        "sub": agent_id,
        "aud": audience(url),
        "iat": int(iat.timestamp()),
        "exp": int((iat + lifetime).timestamp()),
        "jti": jti or uuid.uuid4().hex,
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    header = {"x5t#S256": base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode("ascii")}
    return jwt.encode(claims, credentials.key, algorithm="ES256", headers=header)
