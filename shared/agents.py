"""Agents: enrollment with the workspace's enrollment key, and the registered X.509 certificates that
authenticate every later request (see shared.certauth)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.audit import AuditAction, AuditLog, AuthFailureReason
from shared.errors import (
    AgentNotFound,
    AuthorizationFailed,
    InactiveCustomer,
    InvalidCertificate,
    InvalidDataFormat,
    NotFound,
    WorkspaceNotFound,
)
from shared.ids import parse_workspace_id
from shared.workspaces import SecretStore, WorkspaceRegistry, WorkspaceState, enrollment_key_secret_name

MAX_CERTIFICATE_PEM_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


class AgentState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Agent:
    workspace_id: str
    agent_id: str
    thumbprint: str  # sha256 of the certificate's DER, hex
    certificate_pem: str
    not_before: datetime
    not_after: datetime
    state: AgentState
    registered_at: datetime
    revoked_at: datetime | None = None

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode("ascii"))


class AgentRegistry(Protocol):
    def get_agent(self, workspace_id: str, thumbprint: str) -> Agent:
        """Raises AgentNotFound."""

    def list_agents(self, workspace_id: str) -> list[Agent]: ...

    def create_agent(self, agent: Agent) -> None: ...

    def update_agent(self, agent: Agent) -> None: ...


def thumbprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def parse_certificate_pem(pem: str, *, now: datetime) -> x509.Certificate:
    """A single public certificate, valid now, with a key strong enough to sign assertions."""
    if len(pem) > MAX_CERTIFICATE_PEM_BYTES or "PRIVATE KEY" in pem:
        raise InvalidCertificate("Send the certificate's public part only (one PEM CERTIFICATE block).")
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidCertificate("The certificate is not a PEM X.509 certificate.") from None
    check_validity(certificate, now=now)
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidCertificate(f"RSA keys must have at least {MIN_RSA_BITS} bits.")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ALLOWED_CURVES):
            raise InvalidCertificate("EC keys must be on P-256, P-384 or P-521.")
    else:
        raise InvalidCertificate("The certificate's key must be RSA or EC.")
    return certificate


def check_validity(certificate: x509.Certificate, *, now: datetime) -> None:
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise InvalidCertificate("The certificate is not valid at this time (expired or not yet valid).")


@dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    workspace_id: str
    enrollment_key: str
    certificate_pem: str

    @classmethod
    def parse(cls, body: bytes) -> EnrollmentRequest:
        try:
            document: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidDataFormat("The body must be JSON.") from None
        if not isinstance(document, dict):
            raise InvalidDataFormat("The body must be a JSON object.")
        fields = {name: document.get(name) for name in ("workspace_id", "enrollment_key", "certificate")}
        missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
        if missing:
            raise InvalidDataFormat(f"Missing or non-string fields: {', '.join(missing)}.")
        return cls(
            workspace_id=parse_workspace_id(str(fields["workspace_id"])),
            enrollment_key=str(fields["enrollment_key"]),
            certificate_pem=str(fields["certificate"]),
        )


class Enrollment:
    def __init__(
        self,
        *,
        workspaces: WorkspaceRegistry,
        secrets: SecretStore,
        agents: AgentRegistry,
        audit: AuditLog,
        clock: Callable[[], datetime],
    ) -> None:
        self._workspaces = workspaces
        self._secrets = secrets
        self._agents = agents
        self._audit = audit
        self._clock = clock

    def register(self, request: EnrollmentRequest) -> Agent:
        """Registers the certificate for the workspace; registering the same certificate again returns
        the same agent (an agent may retry a registration whose answer it lost)."""
        now = self._clock()
        self._check_enrollment_key(request.workspace_id, request.enrollment_key)
        certificate = parse_certificate_pem(request.certificate_pem, now=now)
        print_ = thumbprint(certificate)
        try:
            existing = self._agents.get_agent(request.workspace_id, print_)
        except AgentNotFound:
            existing = None
        if existing is not None:
            if existing.state is AgentState.REVOKED:
                raise AuthorizationFailed("This certificate was revoked; enroll with a new one.")
            return existing
        agent = Agent(
            workspace_id=request.workspace_id,
            agent_id=str(uuid.uuid4()),
            thumbprint=print_,
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            state=AgentState.ACTIVE,
            registered_at=now,
        )
        # Audited first: a registration that then fails leaves an entry, never an unaudited agent.
        self._audit.record(
            agent.workspace_id,
            f"agent:{agent.agent_id}",
            AuditAction.AGENT_REGISTER,
            agent_id=agent.agent_id,
            thumbprint=agent.thumbprint,
        )
        self._agents.create_agent(agent)
        return agent

    def _check_enrollment_key(self, workspace_id: str, offered: str) -> None:
        try:
            workspace = self._workspaces.get_workspace(workspace_id)
            expected = self._secrets.get_secret(enrollment_key_secret_name(workspace_id))
        except (WorkspaceNotFound, NotFound):
            raise AuthorizationFailed(
                "The enrollment key is not valid for this workspace.",
                audit_reason=AuthFailureReason.BAD_ENROLLMENT_KEY,
            ) from None
        if not hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8")):
            raise AuthorizationFailed(
                "The enrollment key is not valid for this workspace.",
                audit_reason=AuthFailureReason.BAD_ENROLLMENT_KEY,
                workspace_id=workspace_id,
            )
        if workspace.state is not WorkspaceState.ACTIVE:
            raise InactiveCustomer("The workspace is not active.")


def revoke_agent(agents: AgentRegistry, workspace_id: str, agent_id: str, *, now: datetime) -> Agent:
    for agent in agents.list_agents(workspace_id):
        if agent.agent_id == agent_id:
            if agent.state is AgentState.REVOKED:
                return agent
            revoked = replace(agent, state=AgentState.REVOKED, revoked_at=now)
            agents.update_agent(revoked)
            return revoked
    raise AgentNotFound(f"Agent {agent_id} is not registered in workspace {workspace_id}.")
