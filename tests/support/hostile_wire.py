"""A client that misbehaves on the wire, over real TLS to the local host: it sends a request's head
and then its body as it pleases (in trickles, or half of it and then nothing), or heads no server
should read in full. Every read and wait is bounded; the answer is whatever came back before the
server closed the connection."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from devhost.azurite import AzuritePorts
from shared import sharedkey
from tests.e2e.support import LocalHost, host_environment

READ_CHUNK = 65536


@dataclass(frozen=True)
class WireAnswer:
    """`status` None: the server closed the connection without answering."""

    status: int | None
    headers: Mapping[str, str]
    body: bytes
    seconds: float  # from the last byte sent to the answer or the close


def signed_collector_head(workspace_id: str, key_b64: str, body: bytes, *, log_type: str) -> dict[str, str]:
    """The headers of a Data Collector post of `body`, signed as a client signs it."""
    x_ms_date = sharedkey.rfc1123(datetime.now(UTC))
    authorization = sharedkey.authorization_header(
        workspace_id, key_b64, content_length=len(body), content_type="application/json", x_ms_date=x_ms_date
    )
    return {
        "Authorization": authorization,
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Log-Type": log_type,
        "x-ms-date": x_ms_date,
    }


@contextmanager
def started_local_host(tmp_path: Path, settings: Mapping[str, str] | None = None) -> Iterator[LocalHost]:
    """`python -m devhost` on its own Azurite and state under `tmp_path`, with `settings` added to its
    environment (they may name paths under `tmp_path / "state"`); stopped on the way out."""
    env = {**host_environment(tmp_path, AzuritePorts.free()), **(settings or {})}
    host = LocalHost(state_dir=tmp_path / "state", logs=tmp_path / "logs", env=env)
    try:
        yield host.start()
    finally:
        host.kill()


class RawTlsClient:
    def __init__(self, port: int, ca_file: str, *, timeout: float) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=ca_file)
        self.timeout = timeout

    def send(
        self,
        path: str,
        headers: Iterable[tuple[str, str]],
        body_parts: Iterable[bytes] = (),
        *,
        pause: float = 0.0,
    ) -> WireAnswer:
        """Sends the head, then each body part `pause` seconds apart, then waits (at most `timeout`)
        for the answer or the close."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        with self.context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
            try:
                connection.sendall(head.encode("latin-1"))
                for part in body_parts:
                    time.sleep(pause)
                    connection.sendall(part)
            except OSError:
                pass  # the server may answer and close before the client is done sending
            sent = time.monotonic()
            received = self._read_until_closed(connection)
            return parse_answer(received, seconds=time.monotonic() - sent)

    def _read_until_closed(self, connection: ssl.SSLSocket) -> bytes:
        received = b""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                chunk = connection.recv(READ_CHUNK)
            except (TimeoutError, ssl.SSLError, ConnectionError):
                break
            if not chunk:
                break
            received += chunk
        return received


def parse_answer(received: bytes, *, seconds: float) -> WireAnswer:
    if not received:
        return WireAnswer(None, {}, b"", seconds)
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return WireAnswer(int(status_line.split()[1]), headers, body, seconds)
