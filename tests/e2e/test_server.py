"""The HTTPS server in-process with stand-in functions: requests in, responses out, refusals, a
failing function that does not take the server down, the client certificate forwarded as App
Service forwards it, and a stop that lets requests in flight finish."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest

from devhost.certs import ensure_tls_files
from devhost.clientcerts import client_certificate_context
from devhost.functions import FunctionSpec
from devhost.routes import Route, Router
from devhost.server import MAX_BODY_BYTES, FunctionHttpServer
from tests.support.agent_credentials import AgentCredentials, new_agent_credentials

TIMEOUT_SECONDS = 10.0


def echo(req: func.HttpRequest) -> func.HttpResponse:
    document = {
        "method": req.method,
        "url": req.url,
        "route": dict(req.route_params),
        "params": dict(req.params),
        "header": req.headers.get("X-Test"),
        "body": req.get_body().decode("utf-8"),
    }
    return func.HttpResponse(json.dumps(document), status_code=201, mimetype="application/json")


def plain(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello", headers={"X-Served-By": "plain", "Content-Length": "999"})


def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("a bug")


def not_a_response(req: func.HttpRequest) -> str:
    return "text"


def client_cert(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(req.headers.get("X-ARR-ClientCert")), mimetype="application/json")


FunctionTable = Mapping[str, tuple[str, list[str], Callable[[func.HttpRequest], object]]]

FUNCTIONS: FunctionTable = {
    "echo": ("items/{id}", ["get", "post"], echo),
    "plain": ("plain", ["get", "head"], plain),
    "boom": ("boom", ["get"], boom),
    "not_a_response": ("odd", ["get"], not_a_response),
    "client_cert": ("client-cert", ["get"], client_cert),
}
# The one client certificate the server's trust store holds, as if registered.
AGENT = new_agent_credentials("registered")


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@contextmanager
def _running(tls_dir: Path, functions: FunctionTable) -> Iterator[FunctionHttpServer]:
    tls = ensure_tls_files(tls_dir, now=datetime.now(UTC))
    specs = {
        name: FunctionSpec(name=name, trigger={"type": "httpTrigger", "name": "req"}, entry=entry)
        for name, (_, _, entry) in functions.items()
    }
    routes = [Route.build(name, prefix="api", route=r, methods=m) for name, (r, m, _) in functions.items()]
    context = client_certificate_context(tls, [AGENT.certificate_pem])
    running = FunctionHttpServer(0, functions=specs, router=Router(routes), tls=lambda: context)
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.stop(TIMEOUT_SECONDS)  # a second stop, after a test's own, returns at once
        thread.join(TIMEOUT_SECONDS)


@pytest.fixture
def server(tls_dir: Path) -> Iterator[FunctionHttpServer]:
    with _running(tls_dir, FUNCTIONS) as running:
        yield running


def _client_context(tls_dir: Path, certificate: AgentCredentials | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls_dir / "ca.pem")
    if certificate is not None:
        context.load_cert_chain(*certificate.write_files(tls_dir / certificate.thumbprint[:16]))
    return context


def _request(
    server: FunctionHttpServer,
    tls_dir: Path,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    certificate: AgentCredentials | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPSConnection(
        host, server.server_port, context=_client_context(tls_dir, certificate), timeout=TIMEOUT_SECONDS
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def test_given_a_routed_request_then_the_function_gets_a_real_http_request(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    response, body = _request(
        server,
        tls_dir,
        "POST",
        "/api/items/a%20b?x=1&x=2&empty=",
        body=b"payload",
        headers={"X-Test": "yes", "Content-Type": "text/plain"},
    )

    assert response.status == 201
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(body) == {
        "method": "POST",
        "url": f"https://127.0.0.1:{server.server_port}/api/items/a%20b?x=1&x=2&empty=",
        "route": {"id": "a b"},
        "params": {"x": "1,2", "empty": ""},
        "header": "yes",
        "body": "payload",
    }


def test_given_a_text_response_then_charset_is_added_and_framing_is_the_servers(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    response, body = _request(server, tls_dir, "GET", "/api/plain", host="localhost")

    assert response.status == 200
    assert body == b"hello"
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert response.getheader("Content-Length") == "5"
    assert response.getheader("X-Served-By") == "plain"


def test_given_a_head_request_then_headers_come_without_a_body(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    response, body = _request(server, tls_dir, "HEAD", "/api/plain")

    assert response.status == 200
    assert body == b""


def test_given_an_unknown_route_then_404_json(server: FunctionHttpServer, tls_dir: Path) -> None:
    response, body = _request(server, tls_dir, "GET", "/api/nothing")

    assert response.status == 404
    assert json.loads(body)["Error"] == "NotFound"


def test_given_a_wrong_method_then_405_with_allow(server: FunctionHttpServer, tls_dir: Path) -> None:
    response, body = _request(server, tls_dir, "DELETE", "/api/items/1")

    assert response.status == 405
    assert response.getheader("Allow") == "GET, POST"
    assert json.loads(body)["Error"] == "MethodNotAllowed"


def test_given_a_failing_function_then_500_json_and_the_server_keeps_serving(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    response, body = _request(server, tls_dir, "GET", "/api/boom")
    odd, _ = _request(server, tls_dir, "GET", "/api/odd")
    after, _ = _request(server, tls_dir, "GET", "/api/plain")

    assert response.status == 500
    assert json.loads(body) == {"Error": "InternalServerError", "Message": "The function failed."}
    assert odd.status == 500
    assert after.status == 200


def _raw_exchange(server: FunctionHttpServer, tls_dir: Path, request: bytes) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT_SECONDS) as raw,
        _client_context(tls_dir).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request)
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
        return received


def test_given_a_body_over_the_limit_then_413_before_it_is_read(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    request = (
        f"POST /api/items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()

    received = _raw_exchange(server, tls_dir, request)

    assert received.startswith(b"HTTP/1.1 413 ")
    assert b'"Error":"RequestEntityTooLarge"' in received


def test_given_expect_100_continue_with_an_oversized_body_then_413_instead_of_continue(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    request = (
        f"POST /api/items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()

    received = _raw_exchange(server, tls_dir, request)

    assert received.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Transfer-Encoding: chunked\r\n", 411),
        ("Content-Length: -5\r\n", 400),
        ("Content-Length: x\r\n", 400),
        ("Content-Length: \u00b2\r\n", 400),  # a digit to str.isdigit, not to int()
    ],
)
def test_given_unusable_body_framing_then_it_is_refused(
    server: FunctionHttpServer, tls_dir: Path, headers: str, status: int
) -> None:
    received = _raw_exchange(
        server, tls_dir, f"POST /api/items/1 HTTP/1.1\r\nHost: a\r\n{headers}\r\n".encode("latin-1")
    )

    assert received.startswith(f"HTTP/1.1 {status} ".encode())


def test_given_a_client_that_does_not_trust_the_ca_then_the_handshake_fails(
    server: FunctionHttpServer,
) -> None:
    with (
        socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT_SECONDS) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_given_a_client_that_connects_and_stays_silent_then_others_are_still_served(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT_SECONDS):
        response, _ = _request(server, tls_dir, "GET", "/api/plain")

    assert response.status == 200


def test_given_a_tls_client_certificate_then_the_function_gets_it_base64_der_in_x_arr_clientcert(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    response, body = _request(server, tls_dir, "GET", "/api/client-cert", certificate=AGENT)

    assert response.status == 200
    assert json.loads(body) == AGENT.certificate_der_b64


@pytest.mark.parametrize("name", ["X-ARR-ClientCert", "x-arr-clientcert", "X-Arr-Clientcert"])
def test_given_a_client_that_sends_x_arr_clientcert_itself_then_the_function_never_sees_its_copy(
    server: FunctionHttpServer, tls_dir: Path, name: str
) -> None:
    forged = {name: AGENT.certificate_der_b64}

    _, without_certificate = _request(server, tls_dir, "GET", "/api/client-cert", headers=forged)
    _, with_certificate = _request(
        server, tls_dir, "GET", "/api/client-cert", headers={name: "forged"}, certificate=AGENT
    )

    assert json.loads(without_certificate) is None
    assert json.loads(with_certificate) == AGENT.certificate_der_b64


class SlowFunction:
    """An HTTP function that runs until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self, req: func.HttpRequest) -> func.HttpResponse:
        self.entered.set()
        assert self.release.wait(TIMEOUT_SECONDS)
        self.finished.set()
        return func.HttpResponse("finished")


def test_given_a_request_in_flight_when_stopping_then_it_finishes_and_its_response_is_delivered(
    tls_dir: Path,
) -> None:
    slow = SlowFunction()
    with (
        _running(tls_dir, {"slow": ("slow", ["get"], slow)}) as running,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        answer = pool.submit(_request, running, tls_dir, "GET", "/api/slow")
        assert slow.entered.wait(TIMEOUT_SECONDS)

        stopping = pool.submit(running.stop, TIMEOUT_SECONDS)
        time.sleep(0.5)
        # No longer accepting, but still waiting for the request in flight.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", running.server_port), timeout=TIMEOUT_SECONDS)
        assert not stopping.done()
        slow.release.set()
        stopping.result(TIMEOUT_SECONDS)
        stopped_after_the_function = slow.finished.is_set()
        response, body = answer.result(TIMEOUT_SECONDS)

    assert stopped_after_the_function
    assert response.status == 200
    assert body == b"finished"
    assert response.getheader("Connection") == "close"


def test_given_idle_connections_when_stopping_then_they_are_closed_without_waiting_for_their_timeout(
    server: FunctionHttpServer, tls_dir: Path
) -> None:
    kept_alive = http.client.HTTPSConnection(
        "127.0.0.1", server.server_port, context=_client_context(tls_dir), timeout=TIMEOUT_SECONDS
    )
    silent = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT_SECONDS)
    try:
        kept_alive.request("GET", "/api/plain")
        first = kept_alive.getresponse()
        first.read()
        assert first.status == 200
        assert first.getheader("Connection") is None  # kept alive for another request

        started = time.monotonic()
        server.stop(TIMEOUT_SECONDS)
        elapsed = time.monotonic() - started

        assert elapsed < 2.0
        assert silent.recv(1) == b""  # closed by the server, not left to its timeout
    finally:
        kept_alive.close()
        silent.close()
