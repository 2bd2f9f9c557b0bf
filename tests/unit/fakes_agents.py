"""In-memory ports of the agent core (AgentRegistry, ReplayGuard) and a small certificate factory, for
the unit tests of shared.agents and shared.certauth. Certificates are self-signed, made with
`cryptography` exactly as an agent would make its own."""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from shared.agents import Agent
from shared.errors import AgentNotFound, Conflict


@dataclass
class MemoryAgentRegistry:
    """Agents keyed by (workspace, certificate thumbprint), as the agent table is."""

    agents: dict[tuple[str, str], Agent] = field(default_factory=dict)

    def get_agent(self, workspace_id: str, thumbprint: str) -> Agent:
        try:
            return self.agents[(workspace_id, thumbprint)]
        except KeyError:
            raise AgentNotFound(f"No agent with certificate {thumbprint} in {workspace_id}.") from None

    def list_agents(self, workspace_id: str) -> list[Agent]:
        return [agent for (ws, _), agent in self.agents.items() if ws == workspace_id]

    def create_agent(self, agent: Agent) -> None:
        key = (agent.workspace_id, agent.thumbprint)
        if key in self.agents:
            raise Conflict(f"Agent with certificate {agent.thumbprint} exists already.")
        self.agents[key] = agent

    def update_agent(self, agent: Agent) -> None:
        key = (agent.workspace_id, agent.thumbprint)
        if key not in self.agents:
            raise AgentNotFound(f"No agent with certificate {agent.thumbprint} in {agent.workspace_id}.")
        self.agents[key] = agent


@dataclass
class MemoryReplayGuard:
    """Token ids seen per workspace, kept until the token expires."""

    seen: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def claim_once(self, workspace_id: str, token_id: str, *, expires_at: datetime) -> bool:
        key = (workspace_id, token_id)
        if key in self.seen:
            return False
        self.seen[key] = expires_at
        return True


KEY_KINDS = ("rsa-1024", "rsa-2048", "ec-p256", "ec-p384", "ec-secp256k1", "ed25519")


@functools.cache
def private_key(kind: str, variant: int = 0) -> CertificateIssuerPrivateKeyTypes:
    """One key per (kind, variant) for the session: RSA generation is slow, keys are immutable."""
    if kind == "rsa-1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ec-secp256k1":
        return ec.generate_private_key(ec.SECP256K1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}")


def self_signed_certificate(
    key: CertificateIssuerPrivateKeyTypes,
    *,
    not_before: datetime,
    not_after: datetime,
    common_name: str = "agent.example.net",
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, algorithm)
    )


def valid_certificate(key: CertificateIssuerPrivateKeyTypes, *, now: datetime) -> x509.Certificate:
    return self_signed_certificate(
        key, not_before=now - timedelta(days=1), not_after=now + timedelta(days=30)
    )


def to_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def to_forwarded_header(certificate: x509.Certificate) -> str:
    """`X-ARR-ClientCert` as App Service sets it: base64 of the DER certificate."""
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")


def x5t_s256(certificate: x509.Certificate) -> str:
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
