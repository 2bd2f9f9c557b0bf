"""Which client certificates the local host's handshake accepts (the registered ones, whatever their
dates and issuer), and the trust store rebuilt after an enrollment, before its answer is sent."""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devhost.certs import TlsFiles, ensure_tls_files
from devhost.clientcerts import ENROLLMENT_FUNCTION, ClientCertificateTrust, client_certificate_context
from devhost.functions import FunctionSpec
from tests.support.agent_credentials import AgentCredentials, new_agent_credentials

TIMEOUT_SECONDS = 10.0
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls_files(tmp_path_factory.mktemp("tls"), now=NOW)


def _handshake(server_context: ssl.SSLContext, tls: TlsFiles, agent: AgentCredentials | None) -> bytes | None:
    """The certificate the server saw (DER), None without one; raises the server's handshake error."""
    client_context = ssl.create_default_context(cafile=tls.ca_file)
    if agent is not None:
        client_context.load_cert_chain(*agent.write_files(tls.ca_file.parent / agent.thumbprint[:16]))
    server_side, client_side = socket.socketpair()
    seen: list[bytes | None] = []
    failures: list[Exception] = []

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_side, server_side=True) as connection:
                seen.append(connection.getpeercert(binary_form=True))
                connection.sendall(b"ok")
        except (ssl.SSLError, OSError) as error:
            failures.append(error)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    client_side.settimeout(TIMEOUT_SECONDS)
    try:
        with client_context.wrap_socket(client_side, server_hostname="localhost") as connection:
            connection.recv(2)
    except (ssl.SSLError, OSError):
        pass  # under TLS 1.3 the client learns of a refused certificate only when it reads
    server.join(TIMEOUT_SECONDS)
    if failures:
        raise failures[0]
    return seen[0]


def _der(agent: AgentCredentials) -> bytes:
    return agent.certificate.public_bytes(serialization.Encoding.DER)


def test_given_registered_certificates_then_self_signed_expired_and_ca_issued_ones_are_accepted(
    tls: TlsFiles,
) -> None:
    self_signed = new_agent_credentials()
    expired = new_agent_credentials(not_before=NOW - timedelta(days=9), not_after=NOW - timedelta(days=1))
    issued = _issued_by_a_private_ca()
    context = client_certificate_context(tls, [a.certificate_pem for a in (self_signed, expired, issued)])

    for agent in (self_signed, expired, issued):
        assert _handshake(context, tls, agent) == _der(agent)


def test_given_no_client_certificate_then_the_handshake_succeeds_without_one(tls: TlsFiles) -> None:
    assert _handshake(client_certificate_context(tls, []), tls, None) is None


def test_given_a_certificate_registered_nowhere_then_the_handshake_fails(tls: TlsFiles) -> None:
    context = client_certificate_context(tls, [new_agent_credentials().certificate_pem])

    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, tls, new_agent_credentials("stranger"))


def test_given_an_unreadable_registered_pem_then_it_is_skipped_and_the_others_are_trusted(
    tls: TlsFiles,
) -> None:
    agent = new_agent_credentials()
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"

    context = client_certificate_context(tls, [broken, agent.certificate_pem])

    assert _handshake(context, tls, agent) == _der(agent)


def test_given_a_reload_then_new_connections_trust_what_the_registry_holds_now(tls: TlsFiles) -> None:
    registry: list[str] = []
    trust = ClientCertificateTrust(tls, lambda: registry)
    agent = new_agent_credentials()
    before = trust.context()
    registry.append(agent.certificate_pem)

    trust.reload()

    assert _handshake(trust.context(), tls, agent) == _der(agent)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(before, tls, agent)


def _spec(name: str, status: int) -> FunctionSpec:
    return FunctionSpec(
        name=name,
        trigger={"type": "httpTrigger", "name": "req"},
        entry=lambda req: func.HttpResponse(status_code=status),
    )


@pytest.mark.parametrize(("status", "reloads"), [(201, 1), (403, 0), (400, 0)])
def test_given_the_enrollment_function_then_only_its_201_reloads_the_trust_store_before_answering(
    tls: TlsFiles, status: int, reloads: int
) -> None:
    reads: list[datetime] = []

    def registry() -> list[str]:
        reads.append(datetime.now(UTC))
        return []

    trust = ClientCertificateTrust(tls, registry)
    enrollment = trust.reloading_after_enrollment(_spec(ENROLLMENT_FUNCTION, status))
    request = func.HttpRequest("POST", "https://127.0.0.1/api/agents/register", body=b"")

    response = enrollment.invoke(request)

    assert isinstance(response, func.HttpResponse)
    assert response.status_code == status
    assert len(reads) == reloads


def test_given_another_function_then_it_is_left_as_it_is(tls: TlsFiles) -> None:
    trust = ClientCertificateTrust(tls, lambda: [])
    other = _spec("ingest_agent", 201)

    assert trust.reloading_after_enrollment(other) is other


def _issued_by_a_private_ca() -> AgentCredentials:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issued agent")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a CA the host never sees")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    return AgentCredentials(key=key, certificate=certificate)
