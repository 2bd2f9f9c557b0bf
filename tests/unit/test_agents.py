"""The agent core with in-memory ports: certificate parsing, enrollment with the workspace enrollment
key, and CertificateAuthenticator (forwarded client certificate, client assertion). Every refusal is
checked for its error class and for a message that tells the agent what is wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization

from shared.agents import (
    MAX_CERTIFICATE_PEM_BYTES,
    AgentState,
    EnrollmentRequest,
    parse_certificate_pem,
    revoke_agent,
    thumbprint,
)
from shared.audit import AuditAction
from shared.certauth import FORWARDED_CERT_HEADER, assertion_audience
from shared.errors import (
    AgentNotFound,
    AuthorizationFailed,
    InactiveCustomer,
    InvalidCertificate,
    InvalidDataFormat,
)
from shared.workspaces import WorkspaceState
from tests.support.auth_stacks import (
    BODY,
    NOW,
    AuthStack,
    EnrolledAgent,
    EnrollmentStack,
    assertion,
    bearer,
    claims_for,
    sign,
    url_for,
)
from tests.unit.fakes_agents import (
    private_key,
    self_signed_certificate,
    to_forwarded_header,
    to_pem,
    valid_certificate,
    x5t_s256,
)

# -- certificate parsing --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa-2048", "ec-p256", "ec-p384"])
def test_given_strong_key_certificate_when_parsing_then_accepted(kind: str) -> None:
    certificate = valid_certificate(private_key(kind), now=NOW)

    parsed = parse_certificate_pem(to_pem(certificate), now=NOW)

    assert thumbprint(parsed) == thumbprint(certificate)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("rsa-1024", "at least 2048 bits"),
        ("ec-secp256k1", "P-256, P-384 or P-521"),
        ("ed25519", "must be RSA or EC"),
    ],
)
def test_given_weak_or_unsupported_key_when_parsing_then_invalid_certificate(kind: str, message: str) -> None:
    certificate = valid_certificate(private_key(kind), now=NOW)

    with pytest.raises(InvalidCertificate, match=message):
        parse_certificate_pem(to_pem(certificate), now=NOW)


def test_given_expired_certificate_when_parsing_then_invalid_certificate() -> None:
    certificate = self_signed_certificate(
        private_key("rsa-2048"), not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(seconds=1)
    )

    with pytest.raises(InvalidCertificate, match="expired or not yet valid"):
        parse_certificate_pem(to_pem(certificate), now=NOW)


def test_given_not_yet_valid_certificate_when_parsing_then_invalid_certificate() -> None:
    certificate = self_signed_certificate(
        private_key("rsa-2048"), not_before=NOW + timedelta(seconds=1), not_after=NOW + timedelta(days=30)
    )

    with pytest.raises(InvalidCertificate, match="expired or not yet valid"):
        parse_certificate_pem(to_pem(certificate), now=NOW)


def test_given_certificate_at_the_edges_of_its_validity_when_parsing_then_accepted() -> None:
    certificate = self_signed_certificate(
        private_key("ec-p256"), not_before=NOW, not_after=NOW + timedelta(days=1)
    )

    parse_certificate_pem(to_pem(certificate), now=NOW)
    parse_certificate_pem(to_pem(certificate), now=NOW + timedelta(days=1))


@pytest.mark.parametrize(
    "key_format", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
@pytest.mark.parametrize("key_first", [True, False], ids=["key-first", "key-last"])
def test_given_private_key_in_pem_when_parsing_then_invalid_certificate(
    key_format: serialization.PrivateFormat, key_first: bool
) -> None:
    key = private_key("rsa-2048")
    certificate = to_pem(valid_certificate(key, now=NOW))
    key_pem = key.private_bytes(serialization.Encoding.PEM, key_format, serialization.NoEncryption()).decode()

    with pytest.raises(InvalidCertificate, match="public part only"):
        parse_certificate_pem(key_pem + certificate if key_first else certificate + key_pem, now=NOW)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nnot base64 é\n-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "text", "bad-der", "non-ascii"],
)
def test_given_garbage_when_parsing_then_invalid_certificate(garbage: str) -> None:
    with pytest.raises(InvalidCertificate, match=r"not a PEM X\.509 certificate"):
        parse_certificate_pem(garbage, now=NOW)


def test_given_oversize_pem_when_parsing_then_invalid_certificate() -> None:
    certificate = to_pem(valid_certificate(private_key("ec-p256"), now=NOW))
    padded = "x" * (MAX_CERTIFICATE_PEM_BYTES + 1 - len(certificate)) + "\n" + certificate

    with pytest.raises(InvalidCertificate, match="one PEM CERTIFICATE block"):
        parse_certificate_pem(padded, now=NOW)


# -- enrollment ------------------------------------------------------------------------------------


@pytest.fixture
def enrolling() -> EnrollmentStack:
    return EnrollmentStack()


def test_given_right_enrollment_key_when_registering_then_agent_is_created(
    enrolling: EnrollmentStack,
) -> None:
    certificate = valid_certificate(private_key("rsa-2048"), now=NOW)

    agent = enrolling.enrollment.register(enrolling.request(to_pem(certificate)))

    assert uuid.UUID(agent.agent_id)
    assert agent.workspace_id == enrolling.workspace_id
    assert agent.thumbprint == thumbprint(certificate)
    assert agent.state is AgentState.ACTIVE
    assert agent.registered_at == NOW
    assert (agent.not_before, agent.not_after) == (
        certificate.not_valid_before_utc,
        certificate.not_valid_after_utc,
    )
    assert agent.certificate() == certificate
    assert enrolling.agents.get_agent(enrolling.workspace_id, agent.thumbprint) == agent


def test_given_wrong_enrollment_key_when_registering_then_authorization_failed(
    enrolling: EnrollmentStack,
) -> None:
    certificate = to_pem(valid_certificate(private_key("rsa-2048"), now=NOW))

    with pytest.raises(AuthorizationFailed, match="enrollment key is not valid"):
        enrolling.enrollment.register(enrolling.request(certificate, key="d3JvbmcgZW5yb2xsbWVudCBrZXk="))

    assert enrolling.agents.agents == {}


def test_given_unknown_workspace_when_registering_then_same_refusal_as_a_wrong_key(
    enrolling: EnrollmentStack,
) -> None:
    certificate = to_pem(valid_certificate(private_key("rsa-2048"), now=NOW))
    with pytest.raises(AuthorizationFailed) as wrong_key:
        enrolling.enrollment.register(enrolling.request(certificate, key="wrong"))

    with pytest.raises(AuthorizationFailed) as unknown:
        enrolling.enrollment.register(enrolling.request(certificate, workspace_id=str(uuid.uuid4())))

    assert unknown.value.message == wrong_key.value.message
    assert "enrollment key" in unknown.value.message
    assert type(unknown.value) is type(wrong_key.value)


@pytest.mark.parametrize("state", [WorkspaceState.DISABLED, WorkspaceState.DELETED])
def test_given_inactive_workspace_when_registering_with_right_key_then_inactive_customer(
    enrolling: EnrollmentStack, state: WorkspaceState
) -> None:
    enrolling.set_state(state)
    certificate = to_pem(valid_certificate(private_key("rsa-2048"), now=NOW))

    with pytest.raises(InactiveCustomer, match="not active"):
        enrolling.enrollment.register(enrolling.request(certificate))

    assert enrolling.agents.agents == {}


def test_given_disabled_workspace_when_registering_with_wrong_key_then_state_is_not_revealed(
    enrolling: EnrollmentStack,
) -> None:
    enrolling.set_state(WorkspaceState.DISABLED)
    certificate = to_pem(valid_certificate(private_key("rsa-2048"), now=NOW))

    with pytest.raises(AuthorizationFailed, match="enrollment key is not valid"):
        enrolling.enrollment.register(enrolling.request(certificate, key="wrong"))


def test_given_same_certificate_twice_when_registering_then_same_agent(enrolling: EnrollmentStack) -> None:
    certificate = to_pem(valid_certificate(private_key("ec-p256"), now=NOW))
    first = enrolling.enrollment.register(enrolling.request(certificate))

    again = enrolling.enrollment.register(enrolling.request(certificate))

    assert again.agent_id == first.agent_id
    assert len(enrolling.agents.list_agents(enrolling.workspace_id)) == 1


def test_given_a_new_agent_when_registered_then_audited_once_in_its_workspace(
    enrolling: EnrollmentStack,
) -> None:
    certificate = to_pem(valid_certificate(private_key("rsa-2048"), now=NOW))

    agent = enrolling.enrollment.register(enrolling.request(certificate))
    enrolling.enrollment.register(enrolling.request(certificate))  # an idempotent repeat

    (entry,) = enrolling.audit_store.read(enrolling.workspace_id).entries
    assert (entry.action, entry.actor) == (AuditAction.AGENT_REGISTER, f"agent:{agent.agent_id}")
    assert entry.details == {"agent_id": agent.agent_id, "thumbprint": agent.thumbprint}


def test_given_revoked_certificate_when_registering_again_then_authorization_failed(
    enrolling: EnrollmentStack,
) -> None:
    certificate = to_pem(valid_certificate(private_key("rsa-2048"), now=NOW))
    agent = enrolling.enrollment.register(enrolling.request(certificate))
    revoke_agent(enrolling.agents, enrolling.workspace_id, agent.agent_id, now=NOW)

    with pytest.raises(AuthorizationFailed, match="revoked; enroll with a new one"):
        enrolling.enrollment.register(enrolling.request(certificate))

    assert enrolling.agents.get_agent(enrolling.workspace_id, agent.thumbprint).state is AgentState.REVOKED


def test_given_right_key_and_weak_certificate_when_registering_then_invalid_certificate(
    enrolling: EnrollmentStack,
) -> None:
    certificate = to_pem(valid_certificate(private_key("rsa-1024"), now=NOW))

    with pytest.raises(InvalidCertificate, match="2048 bits"):
        enrolling.enrollment.register(enrolling.request(certificate))

    assert enrolling.agents.agents == {}


def test_given_enrollment_json_when_parsing_then_workspace_id_is_canonical() -> None:
    workspace_id = str(uuid.uuid4())
    body = orjson.dumps(
        {"workspace_id": workspace_id.upper(), "enrollment_key": "key", "certificate": "-----BEGIN..."}
    )

    request = EnrollmentRequest.parse(body)

    assert request == EnrollmentRequest(workspace_id, "key", "-----BEGIN...")


def test_given_enrollment_json_without_fields_when_parsing_then_invalid_data_format() -> None:
    with pytest.raises(InvalidDataFormat, match="enrollment_key, certificate"):
        EnrollmentRequest.parse(orjson.dumps({"workspace_id": str(uuid.uuid4()), "certificate": 3}))


def test_given_active_agent_when_revoking_then_revoked_with_time_and_idempotent(
    enrolling: EnrollmentStack,
) -> None:
    agent = enrolling.enrollment.register(
        enrolling.request(to_pem(valid_certificate(private_key("ec-p256"), now=NOW)))
    )
    later = NOW + timedelta(hours=1)

    revoked = revoke_agent(enrolling.agents, enrolling.workspace_id, agent.agent_id, now=later)
    again = revoke_agent(
        enrolling.agents, enrolling.workspace_id, agent.agent_id, now=later + timedelta(hours=1)
    )

    assert (revoked.state, revoked.revoked_at) == (AgentState.REVOKED, later)
    assert again == revoked


def test_given_unknown_agent_when_revoking_then_agent_not_found(enrolling: EnrollmentStack) -> None:
    with pytest.raises(AgentNotFound, match="is not registered in workspace"):
        revoke_agent(enrolling.agents, enrolling.workspace_id, str(uuid.uuid4()), now=NOW)


# -- certificate authentication -------------------------------------------------------------------
#
# The authenticator checks exp/iat/nbf against its injected clock (the regression tests at the end);
# these tests inject one that reads the wall clock's current second.


def compact_jws(header: dict[str, Any], claims: dict[str, Any], signature: Callable[[bytes], bytes]) -> str:
    """A JWS built by hand, for algorithms PyJWT refuses to produce (none, HMAC keyed with a public key)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(orjson.dumps(header)) + b"." + b64(orjson.dumps(claims))
    return (signing_input + b"." + b64(signature(signing_input))).decode("ascii")


def _times(issued: datetime, lifetime: timedelta) -> dict[str, Any]:
    """iat and exp claims for an assertion issued at `issued`."""
    return {"iat": int(issued.timestamp()), "exp": int((issued + lifetime).timestamp())}


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def auth(now: datetime) -> AuthStack:
    return AuthStack(now=now)


@pytest.fixture
def agent(auth: AuthStack) -> EnrolledAgent:
    return auth.enroll("rsa-2048")


# forwarded client certificate


def test_given_trusted_platform_when_forwarded_certificate_is_registered_then_agent(now: datetime) -> None:
    auth = AuthStack(now=now, trust_forwarded_client_cert=True)
    enrolled = auth.enroll("ec-p256")

    agent = auth.authenticate(
        workspace_id=enrolled.workspace_id,
        headers={FORWARDED_CERT_HEADER: to_forwarded_header(enrolled.certificate)},
    )

    assert agent == enrolled.agent


def test_given_untrusted_platform_when_only_forwarded_certificate_then_header_is_ignored(
    auth: AuthStack, agent: EnrolledAgent
) -> None:
    with pytest.raises(AuthorizationFailed, match="client certificate or a client assertion"):
        auth.authenticate(
            workspace_id=agent.workspace_id,
            headers={FORWARDED_CERT_HEADER: to_forwarded_header(agent.certificate)},
        )


def test_given_untrusted_platform_when_forwarded_header_and_assertion_then_assertion_decides(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    stranger = valid_certificate(private_key("ec-p256", variant=7), now=now)  # never registered
    headers = {FORWARDED_CERT_HEADER: to_forwarded_header(stranger), **bearer(assertion(agent, now=now))}

    assert auth.authenticate(workspace_id=agent.workspace_id, headers=headers) == agent.agent


def test_given_trusted_platform_when_forwarded_certificate_is_unregistered_then_authorization_failed(
    now: datetime,
) -> None:
    auth = AuthStack(now=now, trust_forwarded_client_cert=True)
    stranger = valid_certificate(private_key("ec-p256", variant=7), now=now)

    with pytest.raises(AuthorizationFailed, match="not registered to this workspace"):
        auth.authenticate(
            workspace_id=auth.workspace_a.workspace_id,
            headers={FORWARDED_CERT_HEADER: to_forwarded_header(stranger)},
        )


@pytest.mark.parametrize("header", ["not base64!", base64.b64encode(b"not DER").decode()])
def test_given_trusted_platform_when_forwarded_header_is_malformed_then_authorization_failed(
    now: datetime, header: str
) -> None:
    auth = AuthStack(now=now, trust_forwarded_client_cert=True)

    with pytest.raises(AuthorizationFailed, match="not base64 DER"):
        auth.authenticate(workspace_id=auth.workspace_a.workspace_id, headers={FORWARDED_CERT_HEADER: header})


def test_given_certificate_of_workspace_a_when_forwarded_for_workspace_b_then_authorization_failed(
    now: datetime,
) -> None:
    auth = AuthStack(now=now, trust_forwarded_client_cert=True)
    enrolled = auth.enroll("rsa-2048")

    with pytest.raises(AuthorizationFailed, match="not registered to this workspace"):
        auth.authenticate(
            workspace_id=auth.workspace_b.workspace_id,
            headers={FORWARDED_CERT_HEADER: to_forwarded_header(enrolled.certificate)},
        )


def test_given_no_credentials_when_authenticating_then_authorization_failed(auth: AuthStack) -> None:
    with pytest.raises(AuthorizationFailed, match="Authorization: Bearer"):
        auth.authenticate(workspace_id=auth.workspace_a.workspace_id, headers={})


# client assertion: accepted


@pytest.mark.parametrize(
    ("kind", "algorithm"),
    [("rsa-2048", "RS256"), ("rsa-2048", "PS256"), ("ec-p256", "ES256"), ("ec-p384", "ES384")],
)
def test_given_valid_assertion_when_authenticating_then_agent(
    auth: AuthStack, now: datetime, kind: str, algorithm: str
) -> None:
    enrolled = auth.enroll(kind)

    agent = auth.authenticate(
        workspace_id=enrolled.workspace_id, headers=bearer(assertion(enrolled, now=now, algorithm=algorithm))
    )

    assert agent == enrolled.agent


def test_given_aud_without_query_when_request_url_has_query_then_accepted(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    url = url_for(agent.workspace_id)
    token = assertion(agent, now=now, aud=url.partition("?")[0])

    assert "?" in url
    assert auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token), url=url) == agent.agent


def test_given_aud_with_other_host_case_when_authenticating_then_accepted(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now)
    shouting = url_for(agent.workspace_id).replace("https://sluice.example.net", "HTTPS://SLUICE.Example.NET")

    assert (
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token), url=shouting) == agent.agent
    )


def test_given_iat_in_the_future_within_skew_when_authenticating_then_accepted(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now, **_times(now + timedelta(minutes=10), timedelta(minutes=5)))

    assert auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token)) == agent.agent


def test_given_assertion_expired_within_leeway_when_authenticating_then_accepted(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now, **_times(now - timedelta(minutes=15), timedelta(minutes=5)))

    assert auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token)) == agent.agent


# client assertion: refused


def test_given_bearer_that_is_not_a_jwt_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent
) -> None:
    with pytest.raises(AuthorizationFailed, match="not a JWT"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer("certainly.not.a-jwt"))


def test_given_assertion_without_x5t_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = sign(claims_for(agent, now=now), agent.key, x5t=None)

    with pytest.raises(AuthorizationFailed, match="x5t#S256"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


@pytest.mark.parametrize(
    ("x5t", "message"),
    [("***", "not a SHA-256 thumbprint|not base64url"), ("c2hvcnQ", "not a SHA-256 thumbprint")],
)
def test_given_malformed_x5t_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime, x5t: str, message: str
) -> None:
    token = sign(claims_for(agent, now=now), agent.key, x5t=x5t)

    with pytest.raises(AuthorizationFailed, match=message):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_x5t_of_unregistered_certificate_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    other_key = private_key("rsa-2048", variant=1)
    stranger = valid_certificate(other_key, now=now)
    token = sign(claims_for(agent, now=now), other_key, x5t=x5t_s256(stranger))

    with pytest.raises(AuthorizationFailed, match="not registered to this workspace"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_assertion_signed_by_another_key_with_registered_x5t_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = sign(
        claims_for(agent, now=now), private_key("rsa-2048", variant=1), x5t=x5t_s256(agent.certificate)
    )

    with pytest.raises(AuthorizationFailed, match="not valid: Signature verification failed"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_wrong_aud_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now, aud="https://elsewhere.example.net/api/logs")

    with pytest.raises(AuthorizationFailed, match=r"not valid: .*[Aa]udience"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_aud_including_the_query_string_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    url = url_for(agent.workspace_id)
    token = assertion(agent, now=now, aud=url)

    with pytest.raises(AuthorizationFailed, match=r"not valid: .*[Aa]udience"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token), url=url)


def test_given_assertion_for_another_workspace_path_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now, aud=assertion_audience(url_for(str(uuid.uuid4()))))

    with pytest.raises(AuthorizationFailed, match=r"[Aa]udience"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_lifetime_over_ten_minutes_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now, **_times(now, timedelta(minutes=10, seconds=1)))

    with pytest.raises(AuthorizationFailed, match="at most 10 minutes"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_iat_in_the_future_beyond_skew_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now, **_times(now + timedelta(minutes=16), timedelta(minutes=5)))

    with pytest.raises(AuthorizationFailed, match=r"not valid yet"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_assertion_expired_beyond_leeway_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now, **_times(now - timedelta(minutes=21), timedelta(minutes=5)))

    with pytest.raises(AuthorizationFailed, match=r"has expired"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


@pytest.mark.parametrize("claim", ["iss", "sub"])
def test_given_iss_or_sub_other_than_agent_id_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime, claim: str
) -> None:
    other = auth.enroll("ec-p256")
    token = assertion(agent, now=now, **{claim: other.agent.agent_id})

    with pytest.raises(AuthorizationFailed, match="iss and sub must be the agent id"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "iss", "sub", "aud", "body_sha256"])
def test_given_required_claim_missing_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime, claim: str
) -> None:
    payload = claims_for(agent, now=now)
    del payload[claim]
    token = sign(payload, agent.key, x5t=x5t_s256(agent.certificate))

    with pytest.raises(AuthorizationFailed, match=f'not valid: .*"{claim}"'):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_body_other_than_the_hashed_one_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now)

    with pytest.raises(AuthorizationFailed, match="body does not match"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token), body=BODY + b" ")


def test_given_jti_used_before_when_authenticating_again_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    token = assertion(agent, now=now)
    auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))

    with pytest.raises(AuthorizationFailed, match="already used"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


@pytest.mark.parametrize("jti", ["short", "has spaces in it", "semi;colon-12345", "x" * 129, "ünïcode-123"])
def test_given_jti_with_bad_characters_or_length_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime, jti: str
) -> None:
    token = assertion(agent, now=now, jti=jti)

    with pytest.raises(AuthorizationFailed, match="jti must be 8 to 128 URL-safe characters"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))

    assert auth.replay.seen == {}


def test_given_alg_none_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    header = {"alg": "none", "typ": "JWT", "x5t#S256": x5t_s256(agent.certificate)}
    token = compact_jws(header, claims_for(agent, now=now), lambda _: b"")

    with pytest.raises(AuthorizationFailed, match=r"not valid: .*alg"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_given_hs256_keyed_with_the_public_key_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime, encoding: serialization.Encoding
) -> None:
    public_bytes = agent.certificate.public_key().public_bytes(
        encoding, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "x5t#S256": x5t_s256(agent.certificate)}
    token = compact_jws(
        header, claims_for(agent, now=now), lambda data: hmac.new(public_bytes, data, hashlib.sha256).digest()
    )

    with pytest.raises(AuthorizationFailed, match=r"not valid: .*alg"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_revoked_agent_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    revoke_agent(auth.agents, agent.workspace_id, agent.agent.agent_id, now=now)

    with pytest.raises(AuthorizationFailed, match="revoked"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(assertion(agent, now=now)))


def test_given_certificate_expired_since_enrollment_when_authenticating_then_authorization_failed(
    auth: AuthStack, now: datetime
) -> None:
    key = private_key("rsa-2048")
    certificate = self_signed_certificate(
        key, not_before=now - timedelta(days=30), not_after=now - timedelta(seconds=1)
    )
    auth.now = now - timedelta(days=10)  # enrolled while the certificate was valid
    enrolled = auth.enroll(certificate=certificate)
    auth.now = now

    with pytest.raises(AuthorizationFailed, match="certificate is expired or not yet valid"):
        auth.authenticate(workspace_id=enrolled.workspace_id, headers=bearer(assertion(enrolled, now=now)))


def test_given_certificate_of_workspace_a_when_asserting_for_workspace_b_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    workspace_b = auth.workspace_b.workspace_id
    token = assertion(agent, now=now, aud=assertion_audience(url_for(workspace_b)))

    with pytest.raises(AuthorizationFailed, match="not registered to this workspace"):
        auth.authenticate(workspace_id=workspace_b, headers=bearer(token))


def test_given_same_certificate_enrolled_in_both_workspaces_then_each_gets_its_own_agent(
    auth: AuthStack, agent: EnrolledAgent, now: datetime
) -> None:
    in_b = auth.workspace_b.enrollment.register(auth.workspace_b.request(to_pem(agent.certificate)))
    token_for_b = assertion(
        agent,
        now=now,
        iss=in_b.agent_id,
        sub=in_b.agent_id,
        aud=assertion_audience(url_for(in_b.workspace_id)),
    )

    authenticated = auth.authenticate(workspace_id=in_b.workspace_id, headers=bearer(token_for_b))

    assert authenticated == in_b
    assert in_b.agent_id != agent.agent.agent_id


# -- regressions: bugs these tests found in shared/certauth.py ------------------------------------


@pytest.mark.parametrize(
    ("certificate_kind", "signing_kind", "algorithm"),
    [
        ("rsa-2048", "ec-p256", "ES256"),
        ("ec-p256", "rsa-2048", "RS256"),
    ],
)
def test_given_alg_of_the_other_key_family_when_authenticating_then_authorization_failed(
    auth: AuthStack, now: datetime, certificate_kind: str, signing_kind: str, algorithm: str
) -> None:
    enrolled = auth.enroll(certificate_kind)
    token = sign(
        claims_for(enrolled, now=now),
        private_key(signing_kind, variant=2),
        x5t=x5t_s256(enrolled.certificate),
        algorithm=algorithm,
    )

    with pytest.raises(AuthorizationFailed, match="not valid"):
        auth.authenticate(workspace_id=enrolled.workspace_id, headers=bearer(token))


@pytest.mark.parametrize("times", ["exp-beyond-year-9999", "numeric-strings"])
def test_given_signed_assertion_with_unusable_times_when_authenticating_then_authorization_failed(
    auth: AuthStack, agent: EnrolledAgent, now: datetime, times: str
) -> None:
    issued = int(now.timestamp())
    claims: dict[str, Any] = (
        {"exp": 10**12} if times == "exp-beyond-year-9999" else {"iat": str(issued), "exp": str(issued + 300)}
    )
    token = assertion(agent, now=now, **claims)

    with pytest.raises(AuthorizationFailed, match="client assertion"):
        auth.authenticate(workspace_id=agent.workspace_id, headers=bearer(token))


def test_given_injected_clock_ahead_of_wall_clock_when_assertion_is_valid_at_that_time_then_accepted(
    now: datetime,
) -> None:
    injected = now + timedelta(hours=1)
    auth = AuthStack(now=injected)
    enrolled = auth.enroll("rsa-2048")

    agent = auth.authenticate(
        workspace_id=enrolled.workspace_id, headers=bearer(assertion(enrolled, now=injected))
    )

    assert agent == enrolled.agent


def test_given_injected_clock_ahead_of_wall_clock_when_assertion_expired_at_that_time_then_refused(
    now: datetime,
) -> None:
    injected = now + timedelta(hours=1)
    auth = AuthStack(now=injected)
    enrolled = auth.enroll("rsa-2048")
    token = assertion(enrolled, now=now)  # exp = wall clock + 5 min: 55 minutes ago for the injected clock

    try:
        auth.authenticate(workspace_id=enrolled.workspace_id, headers=bearer(token))
    except AuthorizationFailed as error:
        assert "expired" in error.message
    else:
        raise AssertionError("accepted an assertion that expired 55 minutes ago by the injected clock")
