"""The one way the agent reaches the service: a POST that yields an answer, or an OSError when none
came. The core takes any Transport, so its tests script the answers; HttpsTransport is the real one
(the standard library's http.client over TLS, checked against a CA file or the system's store)."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from shared.agentclient.errors import AgentConfigError

# Error bodies are small JSON documents; more than this is not read.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""


class Transport(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """Raises OSError (ConnectionError, TimeoutError, ssl.SSLError, ...) when no answer came."""


class HttpsTransport:
    """One TLS connection per request: a failed one leaves nothing behind to reuse or to distrust."""

    def __init__(
        self,
        *,
        ca_file: Path | None,
        timeout_seconds: float,
        client_certificate: tuple[Path, Path] | None = None,
    ) -> None:
        """`client_certificate` is (certificate file, key file), presented in the TLS handshake."""
        try:
            self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if client_certificate is not None:
                certificate_file, key_file = client_certificate
                self._context.load_cert_chain(certificate_file, key_file)
        except OSError as error:  # ssl.SSLError included
            raise AgentConfigError(
                f"the CA file or the client certificate cannot be loaded: {error}"
            ) from None
        self._timeout = timeout_seconds

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"not an https URL: {url}")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=self._context, timeout=self._timeout
        )
        try:
            connection.request("POST", target, body=body, headers=dict(headers))
            response = connection.getresponse()
            return HttpAnswer(
                status=response.status,
                headers={name.lower(): value for name, value in response.getheaders()},
                body=response.read(MAX_ANSWER_BYTES),
            )
        except http.client.HTTPException as error:  # a malformed or cut-off answer: none, for the caller
            raise ConnectionError(f"{type(error).__name__}: {error}") from error
        finally:
            connection.close()
