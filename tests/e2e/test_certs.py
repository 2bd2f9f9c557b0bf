"""The local CA and server certificate: made once, kept while valid, re-issued when they expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509

from devhost.certs import SERVER_VALIDITY, ensure_tls_files

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
