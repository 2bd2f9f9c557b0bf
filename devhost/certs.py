"""The local TLS identity: a local CA (its certificate is what clients trust, `ca.pem`) and a server
certificate it issues for 127.0.0.1 and localhost. The CA carries critical name constraints (DNS
localhost, IP 127.0.0.1/32 and ::1/128), so trusting it vouches for no other name, even if its key
leaks. Both are kept in the state dir and made again only when missing, unreadable or about to expire,
so a CA a developer trusted keeps working across starts; a CA without those constraints (made before
they were added) is replaced once. Private keys are owner-only (0600); every file is replaced whole
(write_durably), and two hosts starting on one state dir take turns on a lock file, so a certificate
and its key always come from the same run."""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.durable import write_durably

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
LOCK_FILE = ".tls.lock"
CA_VALIDITY = timedelta(days=5 * 365)
SERVER_VALIDITY = timedelta(days=397)  # the longest lifetime browsers accept for a server certificate
RENEW_BEFORE = timedelta(days=7)
BACKDATE = timedelta(minutes=5)  # tolerate a client clock slightly behind ours
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = (ipaddress.IPv4Address("127.0.0.1"),)
# All the local CA can vouch for, whoever trusts it: the loopback names.
CA_PERMITTED_SUBTREES: tuple[x509.GeneralName, ...] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.IPv4Network("127.0.0.1/32")),
    x509.IPAddress(ipaddress.IPv6Network("::1/128")),
)

log = logging.getLogger("sluice.devhost.certs")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def ensure_tls_files(directory: Path, *, now: datetime) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_file=directory / CA_FILE,
        cert_file=directory / SERVER_CERT_FILE,
        key_file=directory / SERVER_KEY_FILE,
    )
    ca_key_file = directory / CA_KEY_FILE
    with _locked(directory / LOCK_FILE):
        ca = _usable_pair(files.ca_file, ca_key_file, now=now)
        if ca is not None and not _name_constrained(ca[0]):
            log.warning(
                "the local CA in %s has no name constraints: replacing it (remove the old one from any "
                "trust store it was added to)",
                files.ca_file,
            )
            ca = None
        if ca is None:
            log.info("creating a local CA in %s", files.ca_file)
            ca = _new_ca(now)
            _write_pair(files.ca_file, ca_key_file, ca)
        server = _usable_pair(files.cert_file, files.key_file, now=now)
        if server is None or not _issued_by(server[0], ca[0]):
            names = ", ".join([*SERVER_NAMES, *map(str, SERVER_ADDRESSES)])
            log.info("issuing a server certificate for %s", names)
            _write_pair(files.cert_file, files.key_file, _new_server_certificate(ca, now))
    return files


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made if missing), held until the block ends; released by closing."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


_Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _usable_pair(cert_file: Path, key_file: Path, *, now: datetime) -> _Pair | None:
    """The certificate and its key, if both load, belong together and stay valid past RENEW_BEFORE."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
        return None
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc - RENEW_BEFORE:
        return None
    return cert, key


def _name_constrained(ca: x509.Certificate) -> bool:
    """Whether the CA is limited to CA_PERMITTED_SUBTREES, critically, with nothing else allowed."""
    try:
        extension = ca.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False
    permitted = extension.value.permitted_subtrees or []
    return (
        extension.critical
        and not extension.value.excluded_subtrees
        and set(permitted) == set(CA_PERMITTED_SUBTREES)
    )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sluice local host"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_ca(now: datetime) -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Sluice local development CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.NameConstraints(permitted_subtrees=list(CA_PERMITTED_SUBTREES), excluded_subtrees=None),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server_certificate(ca: _Pair, now: datetime) -> _Pair:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    alternative_names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    alternative_names += [x509.IPAddress(a) for a in SERVER_ADDRESSES]
    ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_pair(cert_file: Path, key_file: Path, pair: _Pair) -> None:
    cert, key = pair
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_durably(key_file, key_pem)
    write_durably(cert_file, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
