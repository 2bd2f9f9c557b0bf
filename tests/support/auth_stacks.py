"""The agent core's enrollment and certificate authentication assembled on in-memory ports, and the
client assertions an enrolled agent signs: EnrollmentStack (one workspace and its Enrollment),
AuthStack (two workspaces sharing one agent table, behind a CertificateAuthenticator), and the
claims, signatures and Authorization header of a valid assertion."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import orjson
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from shared.agents import Agent, Enrollment, EnrollmentRequest
from shared.audit import AuditLog
from shared.certauth import CertificateAuthenticator, assertion_audience
from shared.workspaces import WorkspaceState, create_workspace
from tests.unit.fakes import MemoryAuditStore, MemoryRawStore, MemoryRegistry, MemorySecrets
from tests.unit.fakes_agents import (
    MemoryAgentRegistry,
    MemoryReplayGuard,
    private_key,
    to_pem,
    valid_certificate,
    x5t_s256,
)

NOW = datetime(2026, 11, 22, 13, 37, 5, tzinfo=UTC)
BODY = orjson.dumps([{"Computer": "web-1", "Message": "hello"}])


class EnrollmentStack:
    def __init__(
        self, *, clock: Callable[[], datetime] = lambda: NOW, agents: MemoryAgentRegistry | None = None
    ) -> None:
        self.registry = MemoryRegistry()
        self.secrets = MemorySecrets()
        self.agents = MemoryAgentRegistry() if agents is None else agents
        created = create_workspace(
            registry=self.registry, secrets=self.secrets, containers=MemoryRawStore(), now=lambda: NOW
        )
        self.workspace = created.workspace
        self.workspace_id = created.workspace.workspace_id
        self.enrollment_key = created.enrollment_key
        self.audit_store = MemoryAuditStore()
        self.enrollment = Enrollment(
            workspaces=self.registry,
            secrets=self.secrets,
            agents=self.agents,
            audit=AuditLog(self.audit_store, clock=lambda: NOW),
            clock=clock,
        )

    def request(
        self, certificate_pem: str, *, key: str | None = None, workspace_id: str | None = None
    ) -> EnrollmentRequest:
        return EnrollmentRequest(
            workspace_id=workspace_id or self.workspace_id,
            enrollment_key=self.enrollment_key if key is None else key,
            certificate_pem=certificate_pem,
        )

    def set_state(self, state: WorkspaceState) -> None:
        self.registry.update_workspace(replace(self.registry.get_workspace(self.workspace_id), state=state))


@dataclass(frozen=True)
class EnrolledAgent:
    agent: Agent
    key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate

    @property
    def workspace_id(self) -> str:
        return self.agent.workspace_id


def url_for(workspace_id: str) -> str:
    return f"https://sluice.example.net/api/workspaces/{workspace_id}/logs?api-version=2016-04-01"


class AuthStack:
    def __init__(self, *, now: datetime, trust_forwarded_client_cert: bool = False) -> None:
        self.now = now
        self.replay = MemoryReplayGuard()
        self.agents = MemoryAgentRegistry()  # one agent table for all workspaces
        self.workspace_a = EnrollmentStack(clock=lambda: self.now, agents=self.agents)
        self.workspace_b = EnrollmentStack(clock=lambda: self.now, agents=self.agents)
        self.authenticator = CertificateAuthenticator(
            agents=self.agents,
            replay=self.replay,
            clock=lambda: self.now,
            trust_forwarded_client_cert=trust_forwarded_client_cert,
        )

    def enroll(
        self, kind: str = "rsa-2048", *, certificate: x509.Certificate | None = None, variant: int = 0
    ) -> EnrolledAgent:
        key = private_key(kind, variant)
        certificate = certificate or valid_certificate(key, now=self.now)
        agent = self.workspace_a.enrollment.register(self.workspace_a.request(to_pem(certificate)))
        return EnrolledAgent(agent=agent, key=key, certificate=certificate)

    def authenticate(
        self,
        *,
        workspace_id: str,
        headers: dict[str, str],
        url: str | None = None,
        body: bytes = BODY,
    ) -> Agent:
        return self.authenticator.authenticate(
            workspace_id=workspace_id, headers=headers, url=url or url_for(workspace_id), body=body
        )


def claims_for(enrolled: EnrolledAgent, *, now: datetime, body: bytes = BODY) -> dict[str, Any]:
    """A valid assertion's claims: issued now, five minutes to live, for the agent's ingest URL."""
    return {
        "iss": enrolled.agent.agent_id,
        "sub": enrolled.agent.agent_id,
        "aud": assertion_audience(url_for(enrolled.workspace_id)),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": uuid.uuid4().hex,
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }


def sign(
    claims: dict[str, Any],
    key: CertificateIssuerPrivateKeyTypes,
    *,
    x5t: str | None,
    algorithm: str = "RS256",
) -> str:
    headers = {} if x5t is None else {"x5t#S256": x5t}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assertion(enrolled: EnrolledAgent, *, now: datetime, algorithm: str = "RS256", **claims: Any) -> str:
    payload = claims_for(enrolled, now=now)
    payload.update(claims)
    return sign(payload, enrolled.key, x5t=x5t_s256(enrolled.certificate), algorithm=algorithm)
