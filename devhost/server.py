"""HTTPS for the HTTP-triggered functions: each request becomes a real `azure.functions.HttpRequest`,
the function's `HttpResponse` is written back as the Functions host would write it. Bodies are capped
at MAX_BODY_BYTES; header reading is bounded by http.server (100 headers, 64 KiB lines) and the socket
timeout; TLS handshakes run in each connection's thread; a failing function is a 500 while the server
keeps serving. As App Service's front end does, the client's TLS certificate, if it sent one, is passed
to the function base64 DER in `X-ARR-ClientCert`, and a copy of that header sent by the client itself
is always removed (see clientcerts.py for which certificates the handshake accepts).

`stop()` is graceful: it stops accepting, ends idle connections (kept alive, or not yet past the
handshake), and waits a bounded time for the requests in flight, whose responses are still written
(with `Connection: close`). Only after that may the caller take away what functions use (services,
storage). A function still running at the deadline is abandoned: connection threads are daemons, so
it cannot keep the process alive."""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import orjson

from devhost.functions import FunctionSpec
from devhost.routes import MethodNotAllowed, RouteMatch, RouteNotFound, Router

MAX_BODY_BYTES = 32 * 1024 * 1024
# Bounds how long a silent client holds a connection thread: handshake, headers, body, keep-alive.
SOCKET_TIMEOUT_SECONDS = 30.0
# Framing is this server's job: a function's own values for these would corrupt the connection.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
# Set only by this host, from the TLS handshake; lower case like every header passed to functions.
CLIENT_CERT_HEADER = "x-arr-clientcert"

log = logging.getLogger("sluice.devhost.http")


class HostRefusal(Exception):
    """A request the host answers itself, before or instead of a function."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class _Connections:
    """Every open connection and whether it is serving a request, so that a drain can wait for the
    busy ones and end the idle ones."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._busy: dict[socket.socket, bool] = {}
        self.draining = False

    def opened(self, connection: socket.socket) -> None:
        with self._changed:
            self._busy[connection] = False
            if self.draining:
                _end(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._changed:
            self._busy.pop(connection, None)
            self._changed.notify_all()

    def set_busy(self, connection: socket.socket, busy: bool) -> None:
        with self._changed:
            if connection in self._busy:
                self._busy[connection] = busy

    def drain(self, timeout: float) -> int:
        """Ends the idle connections, waits at most `timeout` seconds for the others to close, and
        returns how many are still open."""
        with self._changed:
            self.draining = True
            for connection, busy in self._busy.items():
                if not busy:
                    _end(connection)
            self._changed.wait_for(lambda: not self._busy, timeout)
            return len(self._busy)


def _end(connection: socket.socket) -> None:
    """Wakes the connection's thread out of a read with end of file; its thread then closes it. The
    plain socket's shutdown: SSLSocket.shutdown would drop the TLS object under that thread's feet."""
    with suppress(OSError):  # the client already went
        socket.socket.shutdown(connection, socket.SHUT_RDWR)


class FunctionHttpServer(ThreadingHTTPServer):
    # stop() bounds the wait for requests in flight; a function stuck past it must not keep the
    # process alive, and socketserver's own join on close (block_on_close) has no bound.
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # socketserver's 5 refuses connections under a burst of agents

    def __init__(
        self,
        port: int,
        *,
        functions: Mapping[str, FunctionSpec],
        router: Router,
        tls: Callable[[], ssl.SSLContext],
    ) -> None:
        """`tls` is asked for the context of each new connection, so a rebuilt one (a new trust store
        for client certificates) applies from the next connection on."""
        self.functions = functions
        self.router = router
        self.connections = _Connections()
        self._tls = tls
        super().__init__(("127.0.0.1", port), FunctionRequestHandler)

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.server_port}"

    @property
    def draining(self) -> bool:
        return self.connections.draining

    def stop(self, timeout: float) -> None:
        """Stops serve_forever (which must be running on another thread) and closes the listening
        socket, then lets the requests in flight finish for at most `timeout` seconds."""
        self.shutdown()
        self.server_close()
        still_open = self.connections.drain(timeout)
        if still_open:
            log.warning("stopping with %d connections still serving after %.0f s", still_open, timeout)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered here, on the accepting thread, so a drain right after shutdown() cannot miss a
        # connection whose thread has not run yet.
        self.connections.opened(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.closed(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.closed(request)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        # The handshake happens later, in the connection's own thread under its timeout, so a client
        # that connects and stays silent cannot stall the accept loop for everyone else.
        return self._tls().wrap_socket(connection, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # handshake failures, timeouts, resets: the client's doing
            log.info("connection from %s ended: %s", client_address[0], error)
        else:
            log.error("request from %s failed in the host", client_address[0], exc_info=True)


class FunctionRequestHandler(BaseHTTPRequestHandler):
    server: FunctionHttpServer
    connection: ssl.SSLSocket  # get_request wraps every accepted socket
    protocol_version = "HTTP/1.1"
    server_version = "sluice-devhost"
    timeout = SOCKET_TIMEOUT_SECONDS
    # Set by parse_request; defaults so a request refused before parsing can still be logged.
    command = ""
    path = ""

    def setup(self) -> None:
        super().setup()
        self.connection.do_handshake()

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.server.connections.set_busy(self.request, False)
            if self.server.draining:
                self.close_connection = True

    def parse_request(self) -> bool:
        # Called once the request line is in: from here until the response is written, a drain waits.
        self.server.connections.set_busy(self.request, True)
        return super().parse_request()

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it.
        try:
            self._content_length()
        except HostRefusal as refusal:
            self._send_refusal(refusal)
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server refuses itself (a malformed request line, a head over its limits: 400,
        414, 431...) in the same JSON shape and error code header as every other refusal."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._send_refusal(HostRefusal(code, phrase.replace(" ", ""), message or phrase))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: query strings may carry credentials (function keys, SAS tokens).
        log.info("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.info(format, *args)

    def _dispatch(self) -> None:
        target = urlsplit(self.path)
        try:
            match = self._resolve(target.path)
            body = self._read_body()
        except HostRefusal as refusal:
            self._send_refusal(refusal)
            return
        function = self.server.functions[match.route.function_name]
        request = func.HttpRequest(
            self.command,
            self.server.origin + self.path,
            headers=self._function_headers(),
            params=_joined(parse_qsl(target.query, keep_blank_values=True), ","),
            route_params=match.params,
            body=body,
        )
        try:
            response = function.invoke(request)
            if not isinstance(response, func.HttpResponse):
                raise TypeError(f"expected an HttpResponse, got {type(response).__name__}")
        except Exception:
            log.exception("function %s failed", function.name)
            self._send_refusal(HostRefusal(500, "InternalServerError", "The function failed."))
            return
        self._send_function_response(response)

    def _function_headers(self) -> dict[str, str]:
        headers = _joined(
            ((k.lower(), v) for k, v in self.headers.items() if k.lower() != CLIENT_CERT_HEADER), ", "
        )
        certificate = self.connection.getpeercert(binary_form=True)
        if certificate is not None:
            headers[CLIENT_CERT_HEADER] = base64.b64encode(certificate).decode("ascii")
        return headers

    def _resolve(self, path: str) -> RouteMatch:
        try:
            return self.server.router.resolve(self.command, path)
        except RouteNotFound:
            raise HostRefusal(404, "NotFound", f"No function serves {path}.") from None
        except MethodNotAllowed as error:
            allowed = ", ".join(sorted(error.allowed))
            raise HostRefusal(
                405, "MethodNotAllowed", f"{path} accepts {allowed}.", {"Allow": allowed}
            ) from None

    def _content_length(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HostRefusal(411, "LengthRequired", "Send the body with a Content-Length.")
        raw = self.headers.get("Content-Length", "0").strip()
        if not (raw.isascii() and raw.isdigit()):
            raise HostRefusal(400, "BadRequest", "Content-Length is not a number.")
        length = int(raw)
        if length > MAX_BODY_BYTES:
            raise HostRefusal(413, "RequestEntityTooLarge", f"The body exceeds {MAX_BODY_BYTES} bytes.")
        return length

    def _read_body(self) -> bytes:
        length = self._content_length()
        body = self.rfile.read(length)
        if len(body) != length:
            raise HostRefusal(400, "BadRequest", "The body is shorter than its Content-Length.")
        return body

    def _send_refusal(self, refusal: HostRefusal) -> None:
        # The body may be unread, so the connection cannot carry another request.
        self.close_connection = True
        body = orjson.dumps({"Error": refusal.code, "Message": refusal.message})
        headers = {
            **refusal.headers,
            "Content-Type": "application/json",
            "x-ms-error-code": refusal.code,
            "Connection": "close",
        }
        self._write(refusal.status, headers.items(), body)

    def _send_function_response(self, response: func.HttpResponse) -> None:
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _FRAMING_HEADERS]
        if "content-type" not in response.headers:
            # What azure.functions' HttpResponseConverter adds in Azure.
            mimetype: str = response.mimetype
            charset = f"; charset={response.charset}" if mimetype.startswith("text/") else ""
            headers.append(("Content-Type", mimetype + charset))
        self._write(int(response.status_code), headers, response.get_body())

    def _write(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.server.draining and not self.close_connection:
            self.send_header("Connection", "close")  # sets close_connection: the last on this connection
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _joined(pairs: Iterable[tuple[str, str]], separator: str) -> dict[str, str]:
    """Repeated header or query names folded into one value, as the Functions host passes them."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]}{separator}{value}" if name in joined else value
    return joined
