"""TLS client certificates as App Service handles them with incoming client certificates set to
"Optional"/"Allow": the handshake asks for a certificate, a client may send none, and a certificate
that was sent reaches the app base64 DER in `X-ARR-ClientCert` (server.py forwards it, after removing
any copy the client sent itself). The app, not the front end, decides whether the certificate is
registered, active and in date.

App Service forwards whatever certificate the client sends without checking its chain, which is what
lets agents enroll self-signed certificates. Python's ssl module cannot do that: under CERT_OPTIONAL
OpenSSL verifies a certificate the client sends and aborts the handshake when it is not trusted, and
the verify callback that would accept it anyway (`SSL_CTX_set_verify`, `SSL_CTX_set_cert_verify_callback`)
is not exposed. The ways around that, pyOpenSSL (a new dependency, and a connection type http.server
cannot read from directly) or setting the callback through ctypes on CPython's private structures,
cost more than the two differences that trusting the registry leaves.

So the trust store is the agent registry: every certificate registered to any workspace, in any
state, is a trust anchor of its own (VERIFY_X509_PARTIAL_CHAIN, so a self-signed or CA-issued leaf
needs no issuer), and the handshake ignores validity dates (X509_V_FLAG_NO_CHECK_TIME). Revoked
certificates, expired ones and those registered to another workspace therefore still reach the app,
which answers 403 as it does in Azure. The certificate request names no acceptable CAs (the ssl
module never sets OpenSSL's client CA list), so clients send their certificate whatever its issuer and
the registered certificates are not disclosed to whoever connects. What differs from App Service:

- a certificate registered nowhere ends the handshake (the host logs "certificate verify failed"; in
  Azure the app would answer 403);
- OpenSSL's purpose check refuses a certificate whose extended key usage excludes client
  authentication (one with no such extension, the usual agent certificate, passes).

The store is rebuilt as a new SSLContext, used from the next connection on, at start and after every
enrollment served by this host, before its 201 is written: an agent can connect with its certificate
as soon as it has its agent id. A registration written by another process is trusted after the next
enrollment or restart."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from http import HTTPStatus

import azure.functions as func

from devhost.certs import TlsFiles
from devhost.functions import FunctionSpec

# X509_V_FLAG_NO_CHECK_TIME from OpenSSL's x509_vfy.h (1.1.0 on), which ssl.VerifyFlags does not name.
VERIFY_NO_CHECK_TIME = ssl.VerifyFlags(0x200000)
# The function whose 201 means a certificate was just registered.
ENROLLMENT_FUNCTION = "register_agent"

log = logging.getLogger("sluice.devhost.clientcerts")


def client_certificate_context(files: TlsFiles, trusted_pems: Iterable[str]) -> ssl.SSLContext:
    """The server context: asks for an optional client certificate and accepts those in
    `trusted_pems` whatever their issuer and dates; a PEM OpenSSL cannot load is skipped."""
    context = files.server_context()
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | VERIFY_NO_CHECK_TIME
    for pem in trusted_pems:
        try:
            context.load_verify_locations(cadata=pem)
        except ssl.SSLError as error:
            log.warning("a registered certificate cannot be loaded as a TLS trust anchor: %s", error)
    return context


class ClientCertificateTrust:
    """The current server context; `reload()` rebuilds it from `registered_pems()` (the registry)."""

    def __init__(self, files: TlsFiles, registered_pems: Callable[[], Iterable[str]]) -> None:
        self._files = files
        self._registered_pems = registered_pems
        self._lock = threading.Lock()
        self._context = client_certificate_context(files, ())

    def context(self) -> ssl.SSLContext:
        return self._context

    def reload(self) -> None:
        # Serialised so two enrollments finishing together cannot install an older registry view last.
        with self._lock:
            pems = set(self._registered_pems())  # one certificate may be registered to many workspaces
            self._context = client_certificate_context(self._files, pems)
        log.info("client certificate trust store: %d registered certificates", len(pems))

    def reloading_after_enrollment(self, function: FunctionSpec) -> FunctionSpec:
        """The enrollment function, reloading the trust store before its 201 is sent; other functions
        unchanged. A reload that fails makes the answer a 500: the agent retries, and registering the
        same certificate again is harmless."""
        if function.name != ENROLLMENT_FUNCTION:
            return function
        enroll = function.entry

        def entry(**bindings: object) -> object:
            response = enroll(**bindings)
            if isinstance(response, func.HttpResponse) and response.status_code == HTTPStatus.CREATED:
                self.reload()
            return response

        return replace(function, entry=entry)
