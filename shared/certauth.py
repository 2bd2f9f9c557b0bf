"""Certificate authentication of agents on every request, in two forms:

- the platform-forwarded client certificate, `X-ARR-ClientCert` (base64 DER), as App Service sends it
  once TLS client authentication succeeded; honoured only where the deployment says the platform sets
  it (settings.trust_forwarded_client_cert), since elsewhere a client could send the header itself;
- a client assertion (RFC 7523 style), `Authorization: Bearer <JWT>` signed with the certificate's
  key: header `x5t#S256` names the certificate, `iss` = `sub` = the agent id, `aud` = the endpoint URL,
  a lifetime of at most 10 minutes, a `jti` used once, and `body_sha256` binding the body as sent.

Either way the certificate must be registered to the workspace named by the request, active, and
within its validity dates."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.agents import Agent, AgentRegistry, AgentState, thumbprint
from shared.audit import AuthFailureReason
from shared.errors import AgentNotFound, AuthorizationFailed
from shared.sharedkey import MAX_CLOCK_SKEW
from shared.tokens import unverified_header

FORWARDED_CERT_HEADER = "X-ARR-ClientCert"
ASSERTION_MAX_LIFETIME = timedelta(minutes=10)
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
BODY_HASH_CLAIM = "body_sha256"
_TOKEN_ID = re.compile(r"[A-Za-z0-9._~-]{8,128}")


class ReplayGuard(Protocol):
    def claim_once(self, workspace_id: str, token_id: str, *, expires_at: datetime) -> bool:
        """True the first time a token id is seen for the workspace, False on every later try."""


def assertion_audience(url: str) -> str:
    """`aud` is the endpoint the assertion is for: scheme, host and path of the request, no query."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class CertificateAuthenticator:
    def __init__(
        self,
        *,
        agents: AgentRegistry,
        replay: ReplayGuard,
        clock: Callable[[], datetime],
        trust_forwarded_client_cert: bool,
    ) -> None:
        self._agents = agents
        self._replay = replay
        self._clock = clock
        self._trust_forwarded = trust_forwarded_client_cert

    def authenticate(self, *, workspace_id: str, headers: Mapping[str, str], url: str, body: bytes) -> Agent:
        forwarded = headers.get(FORWARDED_CERT_HEADER)
        if forwarded and self._trust_forwarded:
            return self._forwarded_certificate(workspace_id, forwarded)
        authorization = headers.get("Authorization") or ""
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self._assertion(workspace_id, token.strip(), audience=assertion_audience(url), body=body)
        raise AuthorizationFailed(
            "A client certificate or a client assertion (Authorization: Bearer) is required.",
            audit_reason=AuthFailureReason.BAD_ASSERTION,
        )

    def _forwarded_certificate(self, workspace_id: str, encoded: str) -> Agent:
        try:
            certificate = x509.load_der_x509_certificate(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise AuthorizationFailed(
                "The forwarded client certificate is not base64 DER.",
                audit_reason=AuthFailureReason.UNKNOWN_CERTIFICATE,
            ) from None
        return self._active_agent(workspace_id, thumbprint(certificate))

    def _assertion(self, workspace_id: str, token: str, *, audience: str, body: bytes) -> Agent:
        try:
            certificate_thumbprint = _x5t_s256(unverified_header(token))
        except ValueError:
            raise AuthorizationFailed(
                "The client assertion is not a JWT.", audit_reason=AuthFailureReason.BAD_ASSERTION
            ) from None
        except AuthorizationFailed as error:
            raise error.tag(AuthFailureReason.BAD_ASSERTION) from None
        agent = self._active_agent(workspace_id, certificate_thumbprint)
        try:
            return self._verified_assertion(agent, token, audience=audience, body=body)
        except AuthorizationFailed as error:
            raise error.tag(AuthFailureReason.BAD_ASSERTION, workspace_id) from None

    def _verified_assertion(self, agent: Agent, token: str, *, audience: str, body: bytes) -> Agent:
        workspace_id = agent.workspace_id
        key = _public_key(agent.certificate_pem)
        try:
            # Times are checked below against the injected clock, not PyJWT's own.
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=_algorithms_for(key),
                audience=audience,
                options={
                    "require": ["exp", "iat", "jti", "iss", "sub", "aud", BODY_HASH_CLAIM],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except (jwt.PyJWTError, TypeError, ValueError) as error:
            raise AuthorizationFailed(f"The client assertion is not valid: {error}.") from None
        expires = self._check_times(claims)
        if claims["iss"] != agent.agent_id or claims["sub"] != agent.agent_id:
            raise AuthorizationFailed("The client assertion's iss and sub must be the agent id.")
        claimed_hash = str(claims[BODY_HASH_CLAIM])
        if not hmac.compare_digest(claimed_hash.encode(), body_sha256(body).encode()):
            raise AuthorizationFailed("The body does not match the client assertion's body_sha256.")
        token_id = str(claims["jti"])
        if not _TOKEN_ID.fullmatch(token_id):
            raise AuthorizationFailed("The client assertion's jti must be 8 to 128 URL-safe characters.")
        if not self._replay.claim_once(workspace_id, token_id, expires_at=expires + MAX_CLOCK_SKEW):
            raise AuthorizationFailed(
                "This client assertion was already used.", audit_reason=AuthFailureReason.REPLAYED_ASSERTION
            )
        return agent

    def _check_times(self, claims: Mapping[str, Any]) -> datetime:
        """iat, nbf, exp against this service's clock with 15 minutes of skew; lifetime at most 10 minutes.
        Returns the expiry."""
        times: dict[str, float] = {}
        for name in ("iat", "exp", "nbf"):
            value = claims.get(name)
            if value is None and name == "nbf":
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise AuthorizationFailed("The client assertion's iat, nbf and exp must be numeric dates.")
            times[name] = float(value)
        now = self._clock().timestamp()
        skew = MAX_CLOCK_SKEW.total_seconds()
        issued, expires = times["iat"], times["exp"]
        if expires - issued > ASSERTION_MAX_LIFETIME.total_seconds():
            raise AuthorizationFailed("A client assertion may live at most 10 minutes from its iat.")
        if issued > now + skew or times.get("nbf", issued) > now + skew:
            raise AuthorizationFailed("The client assertion is not valid yet (iat or nbf in the future).")
        if expires < now - skew:
            raise AuthorizationFailed("The client assertion has expired.")
        return datetime.fromtimestamp(expires, UTC)

    def _active_agent(self, workspace_id: str, certificate_thumbprint: str) -> Agent:
        try:
            agent = self._agents.get_agent(workspace_id, certificate_thumbprint)
        except AgentNotFound:
            raise AuthorizationFailed(
                "The certificate is not registered to this workspace.",
                audit_reason=AuthFailureReason.UNKNOWN_CERTIFICATE,
            ) from None
        if agent.state is not AgentState.ACTIVE:
            raise AuthorizationFailed(
                "The agent was revoked.",
                audit_reason=AuthFailureReason.REVOKED_AGENT,
                workspace_id=workspace_id,
            )
        if not agent.not_before <= self._clock() <= agent.not_after:
            raise AuthorizationFailed(
                "The agent's certificate is expired or not yet valid.",
                audit_reason=AuthFailureReason.EXPIRED_CERTIFICATE,
                workspace_id=workspace_id,
            )
        return agent


@lru_cache(maxsize=4096)
def _public_key(certificate_pem: str) -> Any:
    """Parsed once per certificate and process: the registry row is re-read every request (so a
    revocation counts at once), the key it holds does not change."""
    return x509.load_pem_x509_certificate(certificate_pem.encode("ascii")).public_key()


def _algorithms_for(key: object) -> list[str]:
    """Only the algorithms the certificate's key type can verify, so an RSA certificate never sees an
    EC algorithm (PyJWT raises TypeError there) and no HMAC algorithm is ever possible."""
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256", "PS256"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return [_EC_ALGORITHMS.get(key.curve.name, "ES256")]
    raise AuthorizationFailed("The registered certificate's key cannot verify client assertions.")


def _x5t_s256(header: Mapping[str, Any]) -> str:
    value = header.get("x5t#S256")
    if not isinstance(value, str):
        raise AuthorizationFailed("The client assertion's header must carry x5t#S256.")
    try:
        digest = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise AuthorizationFailed("The client assertion's x5t#S256 is not base64url.") from None
    if len(digest) != hashlib.sha256().digest_size:
        raise AuthorizationFailed("The client assertion's x5t#S256 is not a SHA-256 thumbprint.")
    return digest.hex()
