"""The local CA and server certificate: made once, kept while valid, re-issued when they expire; a CA
that can vouch for loopback names only; private keys owner-only whatever was left in the directory."""

from __future__ import annotations

import os
import ssl
import stat
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devhost.certs import CA_KEY_FILE, SERVER_VALIDITY, TlsFiles, ensure_tls_files
from tests.support.concurrency import run_together

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_given_an_empty_state_dir_then_a_ca_and_a_server_certificate_for_loopback_are_made(
    tmp_path: Path,
) -> None:
    files = ensure_tls_files(tmp_path, now=NOW)

    ca, server = _cert(files.ca_file), _cert(files.cert_file)
    assert files.ca_file == tmp_path / "ca.pem"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [IPv4Address("127.0.0.1")]
    assert files.key_file.stat().st_mode & 0o077 == 0
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0


def test_given_valid_files_then_a_second_start_keeps_them(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path, now=NOW)
    before = (files.ca_file.read_bytes(), files.cert_file.read_bytes(), files.key_file.read_bytes())

    ensure_tls_files(tmp_path, now=NOW + timedelta(days=30))

    assert (files.ca_file.read_bytes(), files.cert_file.read_bytes(), files.key_file.read_bytes()) == before


def test_given_an_expired_server_certificate_then_only_it_is_reissued(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path, now=NOW)
    ca_before, server_before = files.ca_file.read_bytes(), files.cert_file.read_bytes()

    ensure_tls_files(tmp_path, now=NOW + SERVER_VALIDITY)

    assert files.ca_file.read_bytes() == ca_before
    assert files.cert_file.read_bytes() != server_before
    _cert(files.cert_file).verify_directly_issued_by(_cert(files.ca_file))


def test_given_a_missing_ca_then_a_new_ca_issues_a_new_server_certificate(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path, now=NOW)
    server_before = files.cert_file.read_bytes()
    files.ca_file.unlink()

    ensure_tls_files(tmp_path, now=NOW)

    assert files.cert_file.read_bytes() != server_before
    _cert(files.cert_file).verify_directly_issued_by(_cert(files.ca_file))


def test_given_a_server_key_that_does_not_match_then_the_pair_is_reissued(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path, now=NOW)
    files.key_file.write_bytes((tmp_path / "ca-key.pem").read_bytes())

    ensure_tls_files(tmp_path, now=NOW)

    assert _cert(files.cert_file).public_key() != _cert(files.ca_file).public_key()
    files.server_context()  # loads only if key and certificate belong together


def test_given_a_new_ca_then_critical_name_constraints_permit_only_loopback_names(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path, now=NOW)

    extension = _cert(files.ca_file).extensions.get_extension_for_class(x509.NameConstraints)

    assert extension.critical is True
    assert extension.value.excluded_subtrees is None
    assert set(extension.value.permitted_subtrees or []) == {
        x509.DNSName("localhost"),
        x509.IPAddress(IPv4Network("127.0.0.1/32")),
        x509.IPAddress(IPv6Network("::1/128")),
    }


def _issue(ca_dir: Path, name: x509.GeneralName) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for `name`, signed with the local CA's key as someone holding it could."""
    ca = _cert(ca_dir / "ca.pem")
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY_FILE).read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elsewhere")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(minutes=5))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([name]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str) -> None:
    """A TLS handshake in memory; raises what the client's verification raises."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out, server_hostname=server_hostname)
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        try:
            client_side.do_handshake()
            return
        except ssl.SSLWantReadError:
            pass
        server_in.write(client_out.read())
        with suppress(ssl.SSLWantReadError):
            server_side.do_handshake()
        client_in.write(server_out.read())
    raise AssertionError("the handshake did not finish")


@pytest.mark.parametrize(
    ("name", "server_hostname"),
    [(x509.DNSName("example.com"), "example.com"), (x509.IPAddress(IPv4Address("10.0.0.1")), "10.0.0.1")],
)
def test_given_a_certificate_the_ca_key_issues_for_another_name_then_a_client_trusting_the_ca_refuses_it(
    tmp_path: Path, name: x509.GeneralName, server_hostname: str
) -> None:
    tls_dir = tmp_path / "tls"
    files = ensure_tls_files(tls_dir, now=datetime.now(UTC))
    cert, key = _issue(tls_dir, name)
    (tmp_path / "other.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "other-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    other = TlsFiles(
        ca_file=files.ca_file, cert_file=tmp_path / "other.pem", key_file=tmp_path / "other-key.pem"
    )
    client = ssl.create_default_context(cafile=files.ca_file)

    _handshake(files.server_context(), client, "localhost")  # the host's own certificate passes
    _handshake(files.server_context(), client, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError, match="subtree"):
        _handshake(other.server_context(), client, server_hostname)


def test_given_a_ca_without_name_constraints_then_it_is_replaced_and_the_server_certificate_reissued(
    tmp_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "an older local CA")])
    old_ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "ca.pem").write_bytes(old_ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / CA_KEY_FILE).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    files = ensure_tls_files(tmp_path, now=NOW)

    ca = _cert(files.ca_file)
    assert ca != old_ca
    assert ca.extensions.get_extension_for_class(x509.NameConstraints).critical
    _cert(files.cert_file).verify_directly_issued_by(ca)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_given_world_readable_temporary_files_left_behind_then_the_keys_are_still_owner_only(
    tmp_path: Path,
) -> None:
    for leftover in ("server-key.pem.tmp", "ca-key.pem.tmp", "server.pem.tmp", "ca.pem.tmp"):
        (tmp_path / leftover).write_bytes(b"left by a crashed run")
        os.chmod(tmp_path / leftover, 0o666)  # noqa: S103 - the permissive leftover is the point

    files = ensure_tls_files(tmp_path, now=NOW)

    assert _mode(files.key_file) == 0o600
    assert _mode(tmp_path / CA_KEY_FILE) == 0o600
    assert _mode(files.cert_file) == 0o644
    assert _mode(files.ca_file) == 0o644
    files.server_context()


def test_given_two_hosts_starting_at_once_on_one_state_dir_then_every_certificate_matches_its_key(
    tmp_path: Path,
) -> None:
    results = run_together(8, lambda _: ensure_tls_files(tmp_path, now=NOW))

    files = results[0]
    _cert(files.cert_file).verify_directly_issued_by(_cert(files.ca_file))
    files.server_context()  # loads only if key and certificate belong together
    assert _mode(files.key_file) == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
