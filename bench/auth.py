"""Authentication cost per request, in microseconds of CPU, each beside the bare cryptography it cannot
avoid (the baseline, measured in the same run):

- SharedKey: parse + date check + HMAC over every current key, keys cached (the directory's TTL cache);
  baseline one HMAC-SHA256 of the string to sign.
- client assertion: JWT header, registry lookup, RS256 signature, claims, body hash, replay claim;
  baseline one RSA-2048 PKCS#1 v1.5 signature verification. Measured with in-memory registry and
  replay ports (CPU), and with the real Table adapters on Azurite (wall: two round trips a request).
- bearer token (Logs Ingestion API): JWT header, key by kid from the cached JWKS, RS256 signature,
  issuer, audience, times, principal; same baseline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from azure.data.tables import TableServiceClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from jwt import PyJWK
from jwt.algorithms import RSAAlgorithm

from devhost.azurite import Azurite, AzuritePorts
from shared import sharedkey
from shared.agents import Agent, AgentState, thumbprint
from shared.azure_storage import TableAgentRegistry, TableReplayGuard
from shared.certauth import BODY_HASH_CLAIM, CertificateAuthenticator, body_sha256
from shared.errors import AgentNotFound, InvalidToken
from shared.tokens import MONITOR_AUDIENCES, TokenValidator

DEFAULT_ITERATIONS = 2000
AZURITE_ITERATIONS = 100
WORKSPACE_ID = "0c6d2a44-2a3f-4f3e-9c7e-1a2b3c4d5e6f"
URL = "https://sluice.example/api/workspaces/0c6d2a44-2a3f-4f3e-9c7e-1a2b3c4d5e6f/logs"
BENCH_ISSUER = "https://sluice.example/bench-issuer"
BENCH_KID = "bench"
BODY = b'[{"Computer":"web-1","Message":"hello"}]' * 25


@dataclass(frozen=True, slots=True)
class AuthFigure:
    name: str
    microseconds: float  # CPU per request (wall for the Azurite case)
    baseline_name: str
    baseline_microseconds: float

    @property
    def ratio(self) -> float:
        return self.microseconds / self.baseline_microseconds if self.baseline_microseconds else 0.0


def _cpu_microseconds(operation: Callable[[], object], iterations: int) -> float:
    operation()  # warm caches and lazy imports outside the measurement
    start = time.process_time()
    for _ in range(iterations):
        operation()
    return 1e6 * (time.process_time() - start) / iterations


def _wall_microseconds(operation: Callable[[], object], iterations: int) -> float:
    operation()
    start = time.perf_counter()
    for _ in range(iterations):
        operation()
    return 1e6 * (time.perf_counter() - start) / iterations


def measure_shared_key(iterations: int) -> AuthFigure:
    key_b64 = base64.b64encode(b"k" * 64).decode()
    keys = (base64.b64decode(key_b64), b"s" * 64)
    x_ms_date = sharedkey.rfc1123(datetime.now(UTC))
    header = sharedkey.authorization_header(
        WORKSPACE_ID, key_b64, content_length=len(BODY), content_type="application/json", x_ms_date=x_ms_date
    )

    def authenticate() -> None:
        credential = sharedkey.parse_authorization(header)
        sharedkey.check_date(x_ms_date, now=datetime.now(UTC))
        sharedkey.verify(
            credential, keys, content_length=len(BODY), content_type="application/json", x_ms_date=x_ms_date
        )

    message = sharedkey.string_to_sign(
        content_length=len(BODY), content_type="application/json", x_ms_date=x_ms_date
    ).encode()
    return AuthFigure(
        name="SharedKey (2 keys, cached)",
        microseconds=_cpu_microseconds(authenticate, iterations),
        baseline_name="one HMAC-SHA256",
        baseline_microseconds=_cpu_microseconds(
            lambda: hmac.new(keys[0], message, hashlib.sha256).digest(), iterations
        ),
    )


class _MemoryAgents:
    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def get_agent(self, workspace_id: str, certificate_thumbprint: str) -> Agent:
        if (workspace_id, certificate_thumbprint) != (self._agent.workspace_id, self._agent.thumbprint):
            raise AgentNotFound(certificate_thumbprint)
        return self._agent

    def list_agents(self, workspace_id: str) -> list[Agent]:
        return [self._agent]

    def create_agent(self, agent: Agent) -> None:
        self._agent = agent

    def update_agent(self, agent: Agent) -> None:
        self._agent = agent


class _MemoryReplay:
    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def claim_once(self, workspace_id: str, token_id: str, *, expires_at: datetime) -> bool:
        if (workspace_id, token_id) in self._seen:
            return False
        self._seen.add((workspace_id, token_id))
        return True


@dataclass(frozen=True, slots=True)
class _AgentCredential:
    agent: Agent
    key: rsa.RSAPrivateKey
    x5t: str

    @classmethod
    def new(cls) -> _AgentCredential:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-agent")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
        agent = Agent(
            workspace_id=WORKSPACE_ID,
            agent_id=str(uuid.uuid4()),
            thumbprint=thumbprint(certificate),
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            state=AgentState.ACTIVE,
            registered_at=now,
        )
        return cls(agent=agent, key=key, x5t=base64.urlsafe_b64encode(digest).rstrip(b"=").decode())

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.agent.agent_id,
            "sub": self.agent.agent_id,
            "aud": URL,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            BODY_HASH_CLAIM: body_sha256(BODY),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"x5t#S256": self.x5t})


def _assertion_operation(
    authenticator: CertificateAuthenticator, credential: _AgentCredential, iterations: int
) -> Callable[[], object]:
    # Assertions are made before timing: each is used once (the replay guard), signing is the agent's cost.
    tokens: Iterator[str] = iter([credential.assertion() for _ in range(iterations + 1)])
    return lambda: authenticator.authenticate(
        workspace_id=WORKSPACE_ID, headers={"Authorization": f"Bearer {next(tokens)}"}, url=URL, body=BODY
    )


def measure_assertion(iterations: int) -> AuthFigure:
    credential = _AgentCredential.new()
    authenticator = CertificateAuthenticator(
        agents=_MemoryAgents(credential.agent),
        replay=_MemoryReplay(),
        clock=lambda: datetime.now(UTC),
        trust_forwarded_client_cert=False,
    )
    token = credential.assertion()
    signing_input, _, signature = token.rpartition(".")
    raw_signature = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    public_key = credential.key.public_key()
    return AuthFigure(
        name="client assertion RS256 (in-memory ports)",
        microseconds=_cpu_microseconds(
            _assertion_operation(authenticator, credential, iterations), iterations
        ),
        baseline_name="one RSA-2048 verify",
        baseline_microseconds=_cpu_microseconds(
            lambda: public_key.verify(
                raw_signature, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
            ),
            iterations,
        ),
    )


class _CachedJwks:
    """The state of a JWKS client between refreshes: keys by kid, no I/O."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        self._key = PyJWK({**jwk, "kid": BENCH_KID, "use": "sig", "alg": "RS256"})

    def signing_key(self, kid: str) -> PyJWK:
        if kid != BENCH_KID:
            raise InvalidToken("unknown kid")
        return self._key


def measure_bearer(iterations: int, baseline: AuthFigure) -> AuthFigure:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    validator = TokenValidator(issuer=BENCH_ISSUER, keys=_CachedJwks(key))
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": BENCH_ISSUER,
            "aud": MONITOR_AUDIENCES[0],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": str(uuid.uuid4()),
        },
        key,
        algorithm="RS256",
        headers={"kid": BENCH_KID},
    )
    authorization = f"Bearer {token}"
    return AuthFigure(
        name="bearer token RS256 (cached JWKS)",
        microseconds=_cpu_microseconds(lambda: validator.principal(authorization), iterations),
        baseline_name=baseline.baseline_name,
        baseline_microseconds=baseline.baseline_microseconds,
    )


@contextmanager
def _azurite_tables(work_dir: Path) -> Iterator[TableServiceClient]:
    azurite = Azurite(location=work_dir / "azurite-auth", ports=AzuritePorts.free()).start()
    try:
        yield TableServiceClient.from_connection_string(azurite.ports.connection_string)
    finally:
        azurite.stop()


def measure_assertion_on_azurite(work_dir: Path, iterations: int, baseline: AuthFigure) -> AuthFigure:
    credential = _AgentCredential.new()
    with _azurite_tables(work_dir) as tables:
        agents = TableAgentRegistry(tables)
        agents.create_agent(credential.agent)
        authenticator = CertificateAuthenticator(
            agents=agents,
            replay=TableReplayGuard(tables),
            clock=lambda: datetime.now(UTC),
            trust_forwarded_client_cert=False,
        )
        microseconds = _wall_microseconds(
            _assertion_operation(authenticator, credential, iterations), iterations
        )
    return AuthFigure(
        name="client assertion RS256 (Table registry + replay on Azurite, wall)",
        microseconds=microseconds,
        baseline_name=baseline.baseline_name,
        baseline_microseconds=baseline.baseline_microseconds,
    )


def run_auth_benchmark(*, iterations: int, work_dir: Path) -> list[AuthFigure]:
    assertion = measure_assertion(iterations)
    return [
        measure_shared_key(iterations),
        assertion,
        measure_assertion_on_azurite(work_dir, min(iterations, AZURITE_ITERATIONS), assertion),
        measure_bearer(iterations, assertion),
    ]


def auth_lines(figures: list[AuthFigure]) -> list[str]:
    lines = ["Authentication cost per request; ratio = full check / the bare cryptography it needs."]
    for figure in figures:
        lines.append(
            f"auth {figure.name:<62}: {figure.microseconds:9.1f} us   "
            f"{figure.baseline_name} {figure.baseline_microseconds:7.1f} us   ratio {figure.ratio:6.2f}"
        )
    return lines
