"""Enrollment and authentication from the agent's side, against the service's own core behind a
scripted transport: the registration (shared.agents.Enrollment), the client assertion
(shared.certauth.CertificateAuthenticator) and SharedKey (shared.sharedkey) accept exactly what the
agent makes. Also the agent's settings: agent.json, durations, sizes, endpoints."""

from __future__ import annotations

import stat
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from shared.agentclient import enrollment
from shared.agentclient.auth import ClientAssertion, SharedKey, agent_logs_url
from shared.agentclient.config import (
    AgentConfig,
    AgentIdentity,
    AuthMode,
    DeliveryOptions,
    StateDir,
    parse_duration,
    parse_endpoint,
    parse_size,
)
from shared.agentclient.enrollment import AgentCredentials, enroll, new_credentials, use_shared_key
from shared.agentclient.errors import AgentConfigError, EnrollmentFailed
from shared.agentclient.transport import HttpAnswer, Transport
from shared.agents import EnrollmentRequest
from shared.certauth import CertificateAuthenticator
from shared.durable import write_durably
from shared.errors import AuthorizationFailed, SluiceError, http_status
from shared.sharedkey import decode_key, parse_authorization, verify
from shared.workspaces import shared_key_secret_name
from tests.support.agent_fakes import T0
from tests.support.auth_stacks import EnrollmentStack
from tests.unit.fakes_agents import MemoryReplayGuard

ENDPOINT = "https://sluice.example"


class EnrollmentService:
    """`POST /api/agents/register` answered by the service's Enrollment core, as the function does."""

    def __init__(self) -> None:
        self.stack = EnrollmentStack(clock=lambda: T0)
        self.requests: list[dict[str, str]] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        assert url == f"{ENDPOINT}/api/agents/register"
        self.requests.append(orjson.loads(body))
        try:
            agent = self.stack.enrollment.register(EnrollmentRequest.parse(body))
        except SluiceError as error:
            document = {"Error": error.code, "Message": error.message}
            return HttpAnswer(http_status(error), {}, orjson.dumps(document))
        document = {
            "agent_id": agent.agent_id,
            "thumbprint": agent.thumbprint,
            "workspace_id": agent.workspace_id,
        }
        return HttpAnswer(201, {}, orjson.dumps(document))


@pytest.fixture
def service() -> EnrollmentService:
    return EnrollmentService()


class Unreachable:
    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        raise ConnectionRefusedError("connection refused")


def enrolled(
    state: StateDir,
    service: EnrollmentService,
    *,
    key: str | None = None,
    transport: Transport | None = None,
    now: datetime = T0,
) -> AgentIdentity:
    return enroll(
        state,
        endpoint=ENDPOINT,
        workspace_id=service.stack.workspace_id,
        enrollment_key=key or service.stack.enrollment_key,
        auth=AuthMode.ASSERTION,
        ca_file=None,
        transport=transport or service,
        now=now,
    )


def state_files(state: StateDir) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in state.path.iterdir()}


# Registered at T0 - 340 days: at T0 the certificate expires within 30 days, so enrolling renews it.
RENEWAL_DUE = T0 - timedelta(days=340)


def test_given_the_enrollment_key_when_enrolling_then_the_public_certificate_is_registered_all_owner_only(
    tmp_path: Path, service: EnrollmentService
) -> None:
    state = StateDir(tmp_path / "agent")

    identity = enrolled(state, service)

    (agent,) = service.stack.agents.list_agents(service.stack.workspace_id)
    assert identity == AgentIdentity(
        ENDPOINT, service.stack.workspace_id, AuthMode.ASSERTION, agent.agent_id, thumbprint=agent.thumbprint
    )
    assert AgentIdentity.from_json(state.agent_file.read_bytes()) == identity
    (request,) = service.requests
    assert "PRIVATE KEY" not in request["certificate"]
    assert request["certificate"] == AgentCredentials.load(state).certificate_pem
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.path.iterdir()} == {
        "agent.json": 0o600,
        f"agent-key-{agent.thumbprint}.pem": 0o600,
        f"agent-cert-{agent.thumbprint}.pem": 0o600,
    }


def test_given_the_agent_certificate_then_it_is_p256_and_valid_an_hour_before_it_was_made(
    tmp_path: Path,
) -> None:
    credentials = new_credentials(common_name="sluice-agent web-1", now=T0)

    assert isinstance(credentials.key.curve, ec.SECP256R1)
    assert credentials.certificate.not_valid_before_utc == T0 - timedelta(hours=1)
    assert credentials.certificate.not_valid_after_utc == T0 + timedelta(days=365)


def test_given_a_wrong_enrollment_key_then_enrollment_fails_with_the_service_code_and_no_agent_json(
    tmp_path: Path, service: EnrollmentService
) -> None:
    state = StateDir(tmp_path / "agent")

    with pytest.raises(EnrollmentFailed, match="403 InvalidAuthorization: The enrollment key is not valid"):
        enrolled(state, service, key="d3Jvbmcga2V5")

    assert not state.agent_file.exists()


def test_given_an_enrolled_agent_when_enrolling_again_then_the_same_key_and_the_same_agent(
    tmp_path: Path, service: EnrollmentService
) -> None:
    state = StateDir(tmp_path / "agent")
    first = enrolled(state, service)
    files = state_files(state)

    second = enrolled(state, service)

    assert second == first
    assert state_files(state) == files


def test_given_a_certificate_that_expires_within_30_days_when_enrolling_then_a_new_key_pair_replaces_it(
    tmp_path: Path, service: EnrollmentService
) -> None:
    state = StateDir(tmp_path / "agent")
    old = enrolled(state, service, now=RENEWAL_DUE)

    new = enrolled(state, service)

    assert (new.agent_id, new.thumbprint) != (old.agent_id, old.thumbprint)
    assert AgentCredentials.load(state).certificate.not_valid_after_utc == T0 + timedelta(days=365)
    assert sorted(state_files(state)) == sorted(
        ["agent.json", f"agent-key-{new.thumbprint}.pem", f"agent-cert-{new.thumbprint}.pem"]
    )


def test_given_no_answer_from_the_service_then_enrollment_fails_naming_the_endpoint_and_saves_nothing(
    tmp_path: Path, service: EnrollmentService
) -> None:
    state = StateDir(tmp_path / "agent")

    with pytest.raises(EnrollmentFailed, match=f"cannot reach {ENDPOINT}: connection refused"):
        enrolled(state, service, transport=Unreachable())

    assert state_files(state) == {}


def test_given_a_renewal_due_when_the_service_cannot_be_reached_then_the_registered_agent_is_kept_as_it_was(
    tmp_path: Path, service: EnrollmentService
) -> None:
    # Were the new key pair saved before its registration, every later post would be signed by a key
    # the service does not know (403) until someone enrolled again.
    state = StateDir(tmp_path / "agent")
    enrolled(state, service, now=RENEWAL_DUE)
    registered = state_files(state)

    with pytest.raises(EnrollmentFailed):
        enrolled(state, service, transport=Unreachable())

    assert state_files(state) == registered


def crash_when_writing(target: Path) -> Callable[[Path, bytes], None]:
    """enrollment's write_durably, but the process dies (here: raises) when it comes to `target`."""

    def write_or_crash(path: Path, data: bytes) -> None:
        if path == target:
            raise SystemExit("killed")
        write_durably(path, data)

    return write_or_crash


def test_given_a_crash_between_saving_the_renewed_pair_and_agent_json_then_the_old_agent_stays_whole(
    tmp_path: Path, service: EnrollmentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(tmp_path / "agent")
    old = enrolled(state, service, now=RENEWAL_DUE)
    registered = state_files(state)
    monkeypatch.setattr(enrollment, "write_durably", crash_when_writing(state.agent_file))

    with pytest.raises(SystemExit):
        enrolled(state, service)

    # The new pair is on disk, unnamed; everything agent.json names is as it was.
    assert AgentIdentity.load(state) == old
    assert state_files(state).items() > registered.items()
    monkeypatch.undo()
    new = enrolled(state, service)  # enrolling again completes the renewal and tidies up
    assert AgentIdentity.load(state) == new != old
    assert sorted(state_files(state)) == sorted(
        ["agent.json", f"agent-key-{new.thumbprint}.pem", f"agent-cert-{new.thumbprint}.pem"]
    )


def test_given_an_enrolled_agent_when_it_signs_posts_then_the_service_accepts_each_once_for_its_body_only(
    tmp_path: Path, service: EnrollmentService
) -> None:
    state = StateDir(tmp_path / "agent")
    identity = enrolled(state, service)
    assert identity.agent_id is not None
    credentials = AgentCredentials.load(state)
    url = agent_logs_url(ENDPOINT, identity.workspace_id)
    assertion = ClientAssertion(url, identity.agent_id, credentials.key, credentials.certificate)
    authenticator = CertificateAuthenticator(
        agents=service.stack.agents,
        replay=MemoryReplayGuard(),
        clock=lambda: T0,
        trust_forwarded_client_cert=False,
    )

    def authenticate(headers: dict[str, str], body: bytes) -> str:
        agent = authenticator.authenticate(
            workspace_id=identity.workspace_id, headers=headers, url=url, body=body
        )
        return agent.agent_id

    first, second = assertion.headers(b"[1]", now=T0), assertion.headers(b"[1]", now=T0)

    assert authenticate(first, b"[1]") == authenticate(second, b"[1]") == identity.agent_id
    with pytest.raises(AuthorizationFailed, match="already used"):
        authenticate(first, b"[1]")
    with pytest.raises(AuthorizationFailed, match="body does not match"):
        authenticate(assertion.headers(b"[1]", now=T0), b"[2]")


def test_given_shared_key_mode_then_no_enrollment_and_posts_verify_with_the_workspace_key(
    tmp_path: Path, service: EnrollmentService
) -> None:
    state = StateDir(tmp_path / "agent")
    workspace_id = service.stack.workspace_id
    key = service.stack.secrets.get_secret(shared_key_secret_name(workspace_id, "primary"))

    identity = use_shared_key(
        state, endpoint=ENDPOINT, workspace_id=workspace_id, shared_key=key, ca_file=None
    )
    headers = SharedKey(ENDPOINT, workspace_id, key).headers(b"[1]", now=T0)

    assert (identity.auth, identity.agent_id) == (AuthMode.SHARED_KEY, None)
    assert service.requests == []
    assert stat.S_IMODE(state.shared_key_file.stat().st_mode) == 0o600
    verify(
        parse_authorization(headers["Authorization"]),
        [decode_key(key)],
        content_length=3,
        content_type="application/json",
        x_ms_date=headers["x-ms-date"],
    )
    with pytest.raises(AgentConfigError, match="base64"):
        use_shared_key(
            state, endpoint=ENDPOINT, workspace_id=workspace_id, shared_key="not base64!", ca_file=None
        )


def test_given_no_agent_json_then_loading_the_config_says_to_enroll_first(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="run `sluice agent enroll` first"):
        AgentConfig.load(StateDir(tmp_path), DeliveryOptions())


def _agent_json(**fields: str) -> bytes:
    document = {
        "endpoint": "https://x",
        "workspace_id": "00000000-0000-4000-8000-000000000001",
        "auth": "shared-key",
        **fields,
    }
    return orjson.dumps(document)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(_agent_json(auth="assertion"), id="assertion-without-agent-id"),
        pytest.param(_agent_json(auth="assertion", agent_id="a1"), id="assertion-without-thumbprint"),
        pytest.param(
            _agent_json(auth="assertion", agent_id="a1", thumbprint="../../../etc/passwd"),
            id="thumbprint-not-a-sha256",
        ),
        pytest.param(_agent_json(endpoint="http://x"), id="plain-http"),
        pytest.param(_agent_json(workspace_id="nope"), id="workspace-not-a-guid"),
    ],
)
def test_given_an_unusable_agent_json_then_loading_says_so(tmp_path: Path, document: bytes) -> None:
    (tmp_path / "agent.json").write_bytes(document)

    with pytest.raises(AgentConfigError):
        AgentConfig.load(StateDir(tmp_path), DeliveryOptions())


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("8m", 480), ("2h", 7200), ("1d", 86400), ("250ms", 0.25), ("1.5", 1.5)],
)
def test_given_durations_then_they_read_as_seconds(text: str, expected: float) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize(
    ("text", "expected"), [("4096", 4096), ("64k", 65536), ("100M", 100 * 2**20), ("1GiB", 2**30)]
)
def test_given_sizes_then_they_read_as_bytes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["8 minutes", "-1s", "", "1w"])
def test_given_a_malformed_duration_then_it_is_refused(text: str) -> None:
    with pytest.raises(AgentConfigError, match="not a duration"):
        parse_duration(text)


def test_given_endpoints_then_only_https_base_urls_are_taken() -> None:
    assert parse_endpoint("https://Sluice.Example:7071/") == "https://sluice.example:7071"
    for refused in (
        "http://sluice.example",
        "https://sluice.example/api",
        "https://sluice.example?x=1",
        "sluice",
    ):
        with pytest.raises(AgentConfigError):
            parse_endpoint(refused)
