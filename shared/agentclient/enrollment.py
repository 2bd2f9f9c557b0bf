"""Becoming an agent: a P-256 key pair and a self-signed certificate made on this machine (the private
key never leaves it), registered with the workspace's enrollment key (`POST /api/agents/register`);
the agent id that comes back and the endpoint are written to agent.json. Every file is owner-only.

Enrolling again is safe: the same certificate is registered again (the service answers with the same
agent), unless it expires within RENEW_BEFORE, when a new key pair is made."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.agentclient.config import AgentIdentity, AuthMode, StateDir
from shared.agentclient.errors import AgentConfigError, EnrollmentFailed
from shared.agentclient.transport import HttpAnswer, Transport
from shared.agents import thumbprint
from shared.durable import ensure_private_directory, write_durably
from shared.sharedkey import decode_key

CERTIFICATE_VALIDITY = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)
# The service refuses a certificate that is not yet valid by its clock, which may be behind ours.
BACKDATE = timedelta(hours=1)
REGISTER_PATH = "/api/agents/register"

log = logging.getLogger("sluice.agent.enrollment")


@dataclass(frozen=True, slots=True)
class AgentCredentials:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def load(cls, state: StateDir) -> AgentCredentials:
        try:
            key = serialization.load_pem_private_key(state.key_file.read_bytes(), password=None)
            certificate = x509.load_pem_x509_certificate(state.certificate_file.read_bytes())
        except (OSError, ValueError) as error:
            raise AgentConfigError(f"the agent's key or certificate cannot be read: {error}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise AgentConfigError(f"{state.key_file} is not an EC private key")
        return cls(key=key, certificate=certificate)

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def save(self, state: StateDir) -> None:
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_durably(state.key_file, key_pem)
        write_durably(state.certificate_file, self.certificate_pem.encode("ascii"))


def new_credentials(*, common_name: str, now: datetime) -> AgentCredentials:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CERTIFICATE_VALIDITY)
        .sign(key, hashes.SHA256())
    )
    return AgentCredentials(key=key, certificate=certificate)


def current_credentials(state: StateDir, *, now: datetime) -> AgentCredentials:
    """The state dir's key and certificate, or new ones when there are none or they expire soon."""
    if state.key_file.exists() and state.certificate_file.exists():
        existing = AgentCredentials.load(state)
        if existing.certificate.not_valid_after_utc - RENEW_BEFORE > now:
            return existing
        log.info(
            "the agent certificate expires on %s: making a new one", existing.certificate.not_valid_after_utc
        )
    created = new_credentials(common_name=f"sluice-agent {socket.gethostname()}"[:64], now=now)
    created.save(state)
    return created


def enroll(
    state: StateDir,
    *,
    endpoint: str,
    workspace_id: str,
    enrollment_key: str,
    auth: AuthMode,
    ca_file: Path | None,
    transport: Transport,
    now: datetime,
) -> AgentIdentity:
    """Registers this machine's certificate and writes agent.json; `transport` must not present a
    client certificate (it is not registered yet)."""
    ensure_private_directory(state.path)
    credentials = current_credentials(state, now=now)
    document = {
        "workspace_id": workspace_id,
        "enrollment_key": enrollment_key,
        "certificate": credentials.certificate_pem,
    }
    try:
        answer = transport.post(
            endpoint + REGISTER_PATH, orjson.dumps(document), {"Content-Type": "application/json"}
        )
    except OSError as error:
        raise EnrollmentFailed(f"cannot reach {endpoint}: {error}") from None
    agent_id = _registered_agent_id(answer, expected_thumbprint=thumbprint(credentials.certificate))
    identity = AgentIdentity(
        endpoint=endpoint, workspace_id=workspace_id, auth=auth, agent_id=agent_id, ca_file=ca_file
    )
    write_durably(state.agent_file, identity.to_json())
    log.info("enrolled as agent %s in workspace %s", agent_id, workspace_id)
    return identity


def use_shared_key(
    state: StateDir, *, endpoint: str, workspace_id: str, shared_key: str, ca_file: Path | None
) -> AgentIdentity:
    """No enrollment: posts are signed with the workspace key (the Data Collector API's scheme)."""
    try:
        decode_key(shared_key)
    except ValueError:
        raise AgentConfigError("the shared key must be the workspace key, base64") from None
    ensure_private_directory(state.path)
    write_durably(state.shared_key_file, shared_key.encode("ascii"))
    identity = AgentIdentity(
        endpoint=endpoint, workspace_id=workspace_id, auth=AuthMode.SHARED_KEY, ca_file=ca_file
    )
    write_durably(state.agent_file, identity.to_json())
    return identity


def read_shared_key(state: StateDir) -> str:
    try:
        return state.shared_key_file.read_text(encoding="ascii").strip()
    except (OSError, ValueError) as error:
        raise AgentConfigError(f"the shared key cannot be read: {error}") from None


def _registered_agent_id(answer: HttpAnswer, *, expected_thumbprint: str) -> str:
    try:
        document = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        document = None
    if answer.status != 201:
        error = document if isinstance(document, dict) else {}
        raise EnrollmentFailed(
            f"the service refused the enrollment: {answer.status} {error.get('Error', '')}: "
            f"{error.get('Message', answer.body[:200].decode('utf-8', 'replace'))}"
        )
    if not isinstance(document, dict) or not isinstance(document.get("agent_id"), str):
        raise EnrollmentFailed("the service's answer to the enrollment names no agent id")
    if document.get("thumbprint") != expected_thumbprint:
        raise EnrollmentFailed("the service registered another certificate than this agent's")
    return str(document["agent_id"])
