"""Becoming an agent: a P-256 key pair and a self-signed certificate made on this machine (the private
key never leaves it), registered with the workspace's enrollment key (`POST /api/agents/register`);
the key pair is saved only once the service registered it, then the agent id that came back, the
endpoint and the certificate's thumbprint are written to agent.json. Every file is owner-only.

Enrolling again is safe: the same certificate is registered again (the service answers with the same
agent), unless it expires within RENEW_BEFORE, when a new key pair is made. A renewal that fails (or
a crash while it saves) leaves the registered agent as it was."""

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
from shared.durable import ensure_private_directory, remove_durably, write_durably
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
        """The key pair of the agent agent.json names."""
        return cls.registered(state, AgentIdentity.load(state))

    @classmethod
    def registered(cls, state: StateDir, identity: AgentIdentity) -> AgentCredentials:
        """The key pair whose certificate `identity` was registered with."""
        if identity.thumbprint is None:
            raise AgentConfigError("the agent uses the shared key: it has no key pair")
        key_file = state.key_file(identity.thumbprint)
        try:
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            certificate = x509.load_pem_x509_certificate(
                state.certificate_file(identity.thumbprint).read_bytes()
            )
        except (OSError, ValueError) as error:
            raise AgentConfigError(f"the agent's key or certificate cannot be read: {error}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise AgentConfigError(f"{key_file} is not an EC private key")
        return cls(key=key, certificate=certificate)

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.certificate)

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def save(self, state: StateDir) -> None:
        """Writes the pair under its own names; agent.json does not name it yet."""
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_durably(state.key_file(self.thumbprint), key_pem)
        write_durably(state.certificate_file(self.thumbprint), self.certificate_pem.encode("ascii"))


def new_credentials(*, common_name: str, now: datetime) -> AgentCredentials:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed_certificate(
        key, common_name=common_name, not_before=now - BACKDATE, not_after=now + CERTIFICATE_VALIDITY
    )
    return AgentCredentials(key=key, certificate=certificate)


def self_signed_certificate(
    key: ec.EllipticCurvePrivateKey, *, common_name: str, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    """What an agent registers: its public key, in a certificate it signs itself (SHA-256)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def current_credentials(state: StateDir, *, now: datetime) -> AgentCredentials:
    """The registered agent's key pair, or a new one when there is none, it cannot be read, or it
    expires within RENEW_BEFORE. A new pair is only in memory: `enroll` saves it once it is registered."""
    if state.agent_file.exists():
        try:
            existing = AgentCredentials.load(state)
        except AgentConfigError as error:
            log.info("%s: making a new key pair", error)
        else:
            expires = existing.certificate.not_valid_after_utc
            if expires - RENEW_BEFORE > now:
                return existing
            log.info("the agent certificate expires on %s: making a new one", expires)
    return new_credentials(common_name=f"sluice-agent {socket.gethostname()}"[:64], now=now)


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
    agent_id = _registered_agent_id(answer, expected_thumbprint=credentials.thumbprint)
    identity = AgentIdentity(
        endpoint=endpoint,
        workspace_id=workspace_id,
        auth=auth,
        agent_id=agent_id,
        ca_file=ca_file,
        thumbprint=credentials.thumbprint,
    )
    # The rename of agent.json is the one step that switches to the new agent: the pair it names is on
    # disk in full before, under names of its own, and the previous pair is removed only after. A crash
    # before that rename leaves the previous agent.json naming the previous pair, intact; one after it
    # leaves the new agent complete. Either way a later enrollment removes the pair left over.
    credentials.save(state)
    write_durably(state.agent_file, identity.to_json())
    _remove_other_key_pairs(state, keep=credentials.thumbprint)
    log.info("enrolled as agent %s in workspace %s", agent_id, workspace_id)
    return identity


def _remove_other_key_pairs(state: StateDir, *, keep: str) -> None:
    """The files of pairs agent.json no longer names: a renewed one, or one a crash left unnamed."""
    for path in (
        *state.path.glob(state.key_file("*").name),
        *state.path.glob(state.certificate_file("*").name),
    ):
        if path not in (state.key_file(keep), state.certificate_file(keep)):
            remove_durably(path)


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
