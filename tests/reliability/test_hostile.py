"""Hostile input against the real handlers (in-process, on Azurite: Data Collector, agent ingest,
registration, Logs Ingestion, the query API) and the local host's TLS server (slow bodies, oversized
heads): a corpus of named cases, and property-based fuzzing of the ingest surface (headers x body x
credential mutations of a valid request) and of the query parameters. Every refused request is a 4xx
with a machine-readable code (never a 5xx, never an unhandled exception) and leaves storage as it
was: no container, no blob, no table row, no audit entry but authentication failures."""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest_http
from devhost.server import SOCKET_TIMEOUT_SECONDS
from tests.e2e.support import LocalHost
from tests.reliability.conftest import Figures, Scale
from tests.support.datacollector import signed_request
from tests.support.hostile_tenants import (
    LOG_TYPE,
    RECORDS_BODY,
    Tenant,
    Tenants,
    agent_url,
    get_query,
    logs_ingestion_url,
    post_agent,
    post_data_collector,
    post_logs_ingestion,
    post_registration,
    refusal_code,
    registration_body,
    two_tenants,
)
from tests.support.hostile_wire import RawTlsClient, WireAnswer, signed_collector_head, started_local_host
from tests.support.storage import blob_service, container_blob_names
from tests.support.tokens import claims, hs256_with_public_key, issuer_key, sign, unsigned

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SECTION = "hostile input"
MIB = 1024 * 1024
JSON = "application/json"
COLLECTOR_PATH = "/api/logs?api-version=2016-04-01"


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    with two_tenants(tmp_path_factory.mktemp("hostile")) as tenants:
        yield tenants


# --- over the local host's TLS: slow bodies and oversized heads --------------------------------------

ANSWER_BOUND_SECONDS = 10.0  # a complete request is answered within this after its last byte
CLOSE_BOUND_SECONDS = SOCKET_TIMEOUT_SECONDS + 10.0  # a silent client is dropped within this
TRICKLE_PARTS = 10
TRICKLE_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class Wire:
    host: LocalHost
    client: RawTlsClient
    workspace_id: str
    key: str
    stalled: Future[WireAnswer]  # a post whose body stops half way, sent when the host started
    stalled_log_type: str

    def blobs(self) -> list[str]:
        return container_blob_names(blob_service(self.host.env["SLUICE_STORAGE"]), self.workspace_id)


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    stalled_log_type = f"Stalled{uuid.uuid4().hex[:8]}_CL"
    with started_local_host(tmp_path_factory.mktemp("hostile-wire")) as host:
        demo = host.demo()
        client = RawTlsClient(host.port, demo["ca_file"], timeout=CLOSE_BOUND_SECONDS + 5)
        head = signed_collector_head(
            demo["workspace_id"], demo["primary_key"], RECORDS_BODY, log_type=stalled_log_type
        )
        # Waited for by the module's last test, so the host's socket timeout runs while the others do.
        with ThreadPoolExecutor(max_workers=1) as background:
            stalled = background.submit(
                client.send, COLLECTOR_PATH, head.items(), [RECORDS_BODY[: len(RECORDS_BODY) // 2]]
            )
            yield Wire(host, client, demo["workspace_id"], demo["primary_key"], stalled, stalled_log_type)


def trickled(wire: Wire, body: bytes, log_type: str) -> WireAnswer:
    head = signed_collector_head(wire.workspace_id, wire.key, body, log_type=log_type)
    size = -(-len(body) // TRICKLE_PARTS)
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return wire.client.send(COLLECTOR_PATH, head.items(), parts, pause=TRICKLE_PAUSE_SECONDS)


def test_given_bodies_trickled_over_tls_then_each_is_answered_and_others_are_served_meanwhile(
    wire: Wire, scale: Scale, figures: Figures
) -> None:
    log_type = f"Trickle{uuid.uuid4().hex[:8]}_CL"
    body = json.dumps([{"Computer": "slow", "Message": "m" * 200}] * 20).encode()
    answers: list[WireAnswer] = []
    slow_clients = [
        threading.Thread(target=lambda: answers.append(trickled(wire, body, log_type)))
        for _ in range(scale.concurrent_agents)
    ]
    for thread in slow_clients:
        thread.start()

    started = time.monotonic()
    meanwhile = wire.host.post_logs([{"Computer": "fast"}], log_type=log_type)
    fast_seconds = time.monotonic() - started
    for thread in slow_clients:
        thread.join(timeout=TRICKLE_PARTS * TRICKLE_PAUSE_SECONDS + ANSWER_BOUND_SECONDS * 2)

    figures.add(SECTION, "slow bodies sent", len(slow_clients))
    assert meanwhile.status == 200 and fast_seconds < ANSWER_BOUND_SECONDS
    assert [(a.status, a.seconds < ANSWER_BOUND_SECONDS) for a in answers] == [(200, True)] * len(
        slow_clients
    )
    assert len([name for name in wire.blobs() if f"/{log_type}/" in name]) == len(slow_clients) + 1


OVERSIZED_HEADS = {
    "one-100kib-header-line": [("X-Padding", "p" * 100 * 1024)],
    "two-hundred-headers": [(f"X-Header-{i}", "v") for i in range(200)],
    "one-100kib-log-type": [("Log-Type", "L" * 100 * 1024)],
}


@pytest.mark.parametrize("case", list(OVERSIZED_HEADS))
def test_given_an_oversized_head_then_a_4xx_with_a_code_and_nothing_is_stored(
    case: str, wire: Wire, figures: Figures
) -> None:
    before = wire.blobs()
    head = signed_collector_head(wire.workspace_id, wire.key, RECORDS_BODY, log_type=LOG_TYPE)

    answer = wire.client.send(COLLECTOR_PATH, [*head.items(), *OVERSIZED_HEADS[case]], [RECORDS_BODY])

    figures.add(SECTION, "named cases tried")
    figures.add(SECTION, "5xx seen", int((answer.status or 0) >= 500))
    assert answer.status is not None and 400 <= answer.status < 500, answer
    assert answer.seconds < ANSWER_BOUND_SECONDS
    assert wire.blobs() == before


def test_given_an_oversized_head_then_the_refusal_carries_a_machine_readable_code(wire: Wire) -> None:
    head = signed_collector_head(wire.workspace_id, wire.key, RECORDS_BODY, log_type=LOG_TYPE)

    answer = wire.client.send(
        COLLECTOR_PATH, [*head.items(), *OVERSIZED_HEADS["two-hundred-headers"]], [RECORDS_BODY]
    )

    assert answer.headers.get("x-ms-error-code") and json.loads(answer.body)["Error"], answer


# --- requests as the corpus sends them: valid except for what the case breaks ---------------------


def collector(
    tenant: Tenant,
    body: bytes,
    *,
    log_type: str = LOG_TYPE,
    headers: Mapping[str, str] | None = None,
    workspace_id: str | None = None,
    key: str | None = None,
    date: datetime | None = None,
    params: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    """A Data Collector post signed with the tenant's primary key (or `key`) for `workspace_id`."""
    return ingest_http.main(
        signed_request(
            workspace_id=workspace_id or tenant.workspace_id,
            key_b64=key or tenant.created.primary_key,
            body=body,
            log_type=log_type,
            date=date,
            params=params,
            extra_headers=headers,
        )
    )


def agent(
    tenant: Tenant,
    body: bytes,
    *,
    workspace_id: str | None = None,
    authorization: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    """An agent post with a fresh assertion of the tenant's agent for this body and URL."""
    route_workspace = workspace_id or tenant.workspace_id
    token = authorization or bearer_assertion(tenant, agent_url(route_workspace), body)
    return post_agent(
        route_workspace,
        {"Content-Type": JSON, "Log-Type": LOG_TYPE, "Authorization": token, **(headers or {})},
        body,
    )


def logs(
    tenant: Tenant,
    body: bytes,
    *,
    immutable_id: str | None = None,
    stream: str | None = None,
    authorization: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    """A Logs Ingestion upload to the tenant's rule with a token of its granted principal."""
    return post_logs_ingestion(
        immutable_id or tenant.immutable_id,
        stream or tenant.stream,
        {
            "Content-Type": JSON,
            "Authorization": authorization or f"Bearer {tenant.bearer_token()}",
            **(headers or {}),
        },
        body,
    )


def query(
    tenant: Tenant,
    resource: str = "usage",
    params: Mapping[str, str] | None = None,
    *,
    workspace_id: str | None = None,
    authorization: str | None = None,
) -> func.HttpResponse:
    """A query of the tenant's workspace with its reader key."""
    authorization = authorization or f"Key {tenant.created.reader_key}"
    return get_query(workspace_id or tenant.workspace_id, resource, {"Authorization": authorization}, params)


def enroll(
    tenant: Tenant, *, workspace_id: str | None = None, key: str | None = None, certificate: str | None = None
) -> func.HttpResponse:
    return post_registration(
        registration_body(
            workspace_id or tenant.workspace_id,
            key or tenant.created.enrollment_key,
            certificate if certificate is not None else tenant.agent.certificate_pem,
        )
    )


def record_with_field(size: int) -> bytes:
    return b'[{"Computer":"host-1","Message":"' + b"x" * size + b'"}]'


def gzip_bomb(inflated: int) -> bytes:
    """A few dozen KiB of gzip that inflate to `inflated` bytes of one JSON record."""
    return gzip.compress(record_with_field(inflated), compresslevel=9)


def deep_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def bearer_assertion(tenant: Tenant, url: str, body: bytes = RECORDS_BODY) -> str:
    return f"Bearer {tenant.assertion(url, body)}"


def unsigned_shared_key(workspace_id: str) -> str:
    return f"SharedKey {workspace_id}:" + "A" * 44


# --- the corpus --------------------------------------------------------------------------------------

Send = Callable[[Tenants], func.HttpResponse]
TRAVERSAL_WORKSPACE_IDS = {  # templates: {a} and {b} are the tenants' workspace ids
    "dot-dot": "../{a}",
    "encoded-dot-dot": "%2e%2e%2f{a}",
    "encoded-slash": "{a}%2f..%2f{b}",
    "backslash": "{a}\\..\\{b}",
}


def traversal_id(tenants: Tenants, template: str) -> str:
    return template.format(a=tenants.a.workspace_id, b=tenants.b.workspace_id)


CONFUSABLE_LOG_TYPES = {
    "cyrillic-a": "D\u0430ta_CL",
    "fullwidth": "\uff28\uff4f\uff53\uff54",
    "zero-width-joiner": "Host\u200dile_CL",
    "right-to-left-override": "\u202eLC_elitsoH",
    "combining-accent": "Hoste\u0301_CL",
    "path": "../../quarantine",
}
BAD_JSON = (400, "InvalidDataFormat")
BAD_LOG_TYPE = (400, "InvalidLogType")
FORBIDDEN = (403, "InvalidAuthorization")
NOT_GRANTED = (403, "OperationFailed")
BAD_TOKEN = (401, "InvalidAuthenticationToken")
TOO_LARGE = (413, "RequestEntityTooLarge")
LOGS_TOO_LARGE = (413, "ContentLengthLimitExceeded")

CORPUS: dict[str, tuple[Send, tuple[int, str]]] = {
    # Malformed and truncated JSON
    "collector-truncated-json": (lambda t: collector(t.a, RECORDS_BODY[:-3]), BAD_JSON),
    "collector-single-quotes": (lambda t: collector(t.a, b"[{'Computer': 'a'}]"), BAD_JSON),
    "collector-trailing-garbage": (lambda t: collector(t.a, RECORDS_BODY + b" }"), BAD_JSON),
    "collector-empty-body": (lambda t: collector(t.a, b""), BAD_JSON),
    "collector-empty-array": (lambda t: collector(t.a, b"[]"), BAD_JSON),
    "collector-array-of-scalars": (lambda t: collector(t.a, b'[1, null, "x"]'), BAD_JSON),
    "collector-nan-literal": (lambda t: collector(t.a, b'[{"v": NaN}]'), BAD_JSON),
    "collector-raw-nul-in-string": (lambda t: collector(t.a, b'[{"m":"a\x00b"}]'), BAD_JSON),
    "agent-truncated-json": (lambda t: agent(t.a, RECORDS_BODY[:10]), BAD_JSON),
    "logs-truncated-json": (lambda t: logs(t.a, RECORDS_BODY[:10]), BAD_JSON),
    "logs-object-not-array": (lambda t: logs(t.a, b'{"Computer":"a"}'), BAD_JSON),
    "register-truncated-json": (lambda t: post_registration(b'{"workspace_id": "'), BAD_JSON),
    # Deep nesting
    "collector-100k-open-brackets": (lambda t: collector(t.a, b"[" * 100_000), BAD_JSON),
    "collector-100k-nested-arrays": (lambda t: collector(t.a, deep_arrays(100_000)), BAD_JSON),
    "collector-100k-nested-objects": (lambda t: collector(t.a, deep_objects(100_000)), BAD_JSON),
    "agent-100k-nested-objects": (lambda t: agent(t.a, deep_objects(100_000)), BAD_JSON),
    "logs-100k-open-brackets": (lambda t: logs(t.a, b"[" * 100_000), BAD_JSON),
    "register-100k-nested-arrays": (lambda t: post_registration(deep_arrays(100_000)), BAD_JSON),
    # Huge fields
    "collector-31mib-string-field": (lambda t: collector(t.a, record_with_field(31 * MIB)), TOO_LARGE),
    "agent-31mib-string-field": (lambda t: agent(t.a, record_with_field(31 * MIB)), TOO_LARGE),
    "logs-25mib-string-field": (lambda t: logs(t.a, record_with_field(25 * MIB)), LOGS_TOO_LARGE),
    "register-25mib-certificate": (
        lambda t: enroll(t.a, certificate="A" * (25 * MIB)),
        (400, "InvalidCertificate"),
    ),
    "register-25mib-enrollment-key": (lambda t: enroll(t.a, key="k" * (25 * MIB)), FORBIDDEN),
    # Invalid UTF-8
    "collector-invalid-utf8": (lambda t: collector(t.a, b'[{"m":"\xff\xfe"}]'), BAD_JSON),
    "collector-encoded-surrogate": (lambda t: collector(t.a, b'[{"m":"\xed\xa0\x80"}]'), BAD_JSON),
    "collector-overlong-slash": (lambda t: collector(t.a, b'[{"m":"\xc0\xaf"}]'), BAD_JSON),
    "collector-utf16-body": (lambda t: collector(t.a, RECORDS_BODY.decode().encode("utf-16")), BAD_JSON),
    "logs-invalid-utf8": (lambda t: logs(t.a, b'[{"m":"\x80"}]'), BAD_JSON),
    "register-invalid-utf8": (lambda t: post_registration(b'{"workspace_id":"\xff"}'), BAD_JSON),
    # Gzip bombs and broken gzip
    "collector-gzip-bomb-40mib": (
        lambda t: collector(t.a, gzip_bomb(40 * MIB), headers={"Content-Encoding": "gzip"}),
        TOO_LARGE,
    ),
    "agent-gzip-bomb-40mib": (
        lambda t: agent(t.a, gzip_bomb(40 * MIB), headers={"Content-Encoding": "gzip"}),
        TOO_LARGE,
    ),
    "logs-gzip-bomb-40mib": (
        lambda t: logs(t.a, gzip_bomb(40 * MIB), headers={"Content-Encoding": "gzip"}),
        LOGS_TOO_LARGE,
    ),
    "collector-gzip-truncated": (
        lambda t: collector(t.a, gzip.compress(RECORDS_BODY)[:20], headers={"Content-Encoding": "gzip"}),
        BAD_JSON,
    ),
    "collector-gzip-of-gzip": (
        lambda t: collector(
            t.a, gzip.compress(gzip.compress(RECORDS_BODY)), headers={"Content-Encoding": "gzip"}
        ),
        BAD_JSON,
    ),
    "collector-gzip-claimed-plain-sent": (
        lambda t: collector(t.a, RECORDS_BODY, headers={"Content-Encoding": "gzip"}),
        BAD_JSON,
    ),
    "collector-unknown-content-encoding": (
        lambda t: collector(t.a, RECORDS_BODY, headers={"Content-Encoding": "br"}),
        (400, "UnsupportedContentType"),
    ),
    # Oversized and malformed headers
    "collector-1mib-log-type": (lambda t: collector(t.a, RECORDS_BODY, log_type="A" * MIB), BAD_LOG_TYPE),
    "collector-64kib-time-generated-field": (
        lambda t: collector(t.a, RECORDS_BODY, headers={"time-generated-field": "T" * 65536}),
        (400, "BadRequest"),
    ),
    "collector-crlf-in-resource-id": (
        lambda t: collector(t.a, RECORDS_BODY, headers={"x-ms-AzureResourceId": "/sub\r\nX-Injected: 1"}),
        (400, "BadRequest"),
    ),
    "collector-content-length-lies-huge": (
        lambda t: collector(t.a, RECORDS_BODY, headers={"Content-Length": str(10**12)}),
        TOO_LARGE,
    ),
    "collector-missing-api-version": (
        lambda t: collector(t.a, RECORDS_BODY, params={}),
        (400, "MissingApiVersion"),
    ),
    "collector-other-api-version": (
        lambda t: collector(t.a, RECORDS_BODY, params={"api-version": "2016-04-01'--"}),
        (400, "InvalidApiVersion"),
    ),
    # Wrong and mixed auth
    "collector-a-signature-b-workspace-id": (
        lambda t: collector(t.a, RECORDS_BODY, workspace_id=t.b.workspace_id),
        FORBIDDEN,
    ),
    "collector-a-id-b-key": (lambda t: collector(t.a, RECORDS_BODY, key=t.b.created.primary_key), FORBIDDEN),
    "collector-enrollment-key-as-shared-key": (
        lambda t: collector(t.a, RECORDS_BODY, key=t.a.created.enrollment_key),
        FORBIDDEN,
    ),
    "collector-date-20-minutes-old": (
        lambda t: collector(t.a, RECORDS_BODY, date=datetime.now(UTC) - timedelta(minutes=20)),
        FORBIDDEN,
    ),
    "collector-bearer-token": (
        lambda t: collector(t.a, RECORDS_BODY, headers={"Authorization": f"Bearer {t.a.bearer_token()}"}),
        FORBIDDEN,
    ),
    "collector-assertion": (
        lambda t: collector(
            t.a,
            RECORDS_BODY,
            headers={"Authorization": bearer_assertion(t.a, agent_url(t.a.workspace_id))},
        ),
        FORBIDDEN,
    ),
    "collector-forged-signature": (
        lambda t: collector(
            t.a, RECORDS_BODY, headers={"Authorization": unsigned_shared_key(t.a.workspace_id)}
        ),
        FORBIDDEN,
    ),
    "collector-two-authorizations": (
        lambda t: collector(
            t.a,
            RECORDS_BODY,
            headers={
                "Authorization": f"{unsigned_shared_key(t.a.workspace_id)}, Bearer {t.a.bearer_token()}"
            },
        ),
        FORBIDDEN,
    ),
    "collector-no-authorization-scheme": (
        lambda t: collector(t.a, RECORDS_BODY, headers={"Authorization": t.a.created.primary_key}),
        FORBIDDEN,
    ),
    "agent-shared-key": (
        lambda t: agent(t.a, RECORDS_BODY, authorization=unsigned_shared_key(t.a.workspace_id)),
        FORBIDDEN,
    ),
    "agent-bearer-token-of-the-issuer": (
        lambda t: agent(t.a, RECORDS_BODY, authorization=f"Bearer {t.a.bearer_token()}"),
        FORBIDDEN,
    ),
    "agent-assertion-and-shared-key": (
        lambda t: agent(
            t.a,
            RECORDS_BODY,
            authorization=bearer_assertion(t.a, agent_url(t.a.workspace_id))
            + ", "
            + unsigned_shared_key(t.a.workspace_id),
        ),
        FORBIDDEN,
    ),
    "agent-assertion-for-another-body": (
        lambda t: agent(
            t.a,
            RECORDS_BODY,
            authorization=bearer_assertion(t.a, agent_url(t.a.workspace_id), b"[{}]"),
        ),
        FORBIDDEN,
    ),
    "agent-assertion-for-another-url": (
        lambda t: agent(
            t.a,
            RECORDS_BODY,
            authorization=bearer_assertion(t.a, agent_url(t.b.workspace_id)),
        ),
        FORBIDDEN,
    ),
    "agent-assertion-alg-none": (
        lambda t: agent(
            t.a,
            RECORDS_BODY,
            authorization="Bearer "
            + unsigned({"iss": t.a.agent_id, "sub": t.a.agent_id, "aud": agent_url(t.a.workspace_id)}),
        ),
        FORBIDDEN,
    ),
    "logs-shared-key": (
        lambda t: logs(t.a, RECORDS_BODY, authorization=unsigned_shared_key(t.a.workspace_id)),
        BAD_TOKEN,
    ),
    "logs-agent-assertion": (
        lambda t: logs(
            t.a,
            RECORDS_BODY,
            authorization=bearer_assertion(t.a, logs_ingestion_url(t.a.immutable_id, t.a.stream)),
        ),
        BAD_TOKEN,
    ),
    "logs-alg-none-token": (
        lambda t: logs(t.a, RECORDS_BODY, authorization=f"Bearer {unsigned(claims(t.a.principal))}"),
        BAD_TOKEN,
    ),
    "logs-hs256-with-public-key": (
        lambda t: logs(
            t.a,
            RECORDS_BODY,
            authorization=f"Bearer {hs256_with_public_key(claims(t.a.principal), key=issuer_key())}",
        ),
        BAD_TOKEN,
    ),
    "logs-token-of-another-issuer-key": (
        lambda t: logs(
            t.a,
            RECORDS_BODY,
            authorization=f"Bearer {sign(claims(t.a.principal), key=issuer_key('attacker'))}",
        ),
        BAD_TOKEN,
    ),
    "register-enrollment-key-of-b-for-a": (lambda t: enroll(t.a, key=t.b.created.enrollment_key), FORBIDDEN),
    "register-shared-key-as-enrollment-key": (lambda t: enroll(t.a, key=t.a.created.primary_key), FORBIDDEN),
    # Path-traversal ids
    **{
        f"agent-workspace-{name}": (
            lambda t, template=template: agent(t.a, RECORDS_BODY, workspace_id=traversal_id(t, template)),
            (400, "InvalidCustomerId"),
        )
        for name, template in TRAVERSAL_WORKSPACE_IDS.items()
    },
    "collector-customer-id-dot-dot": (
        lambda t: collector(t.a, RECORDS_BODY, workspace_id=f"../../ws-{t.b.workspace_id}"),
        (400, "InvalidCustomerId"),
    ),
    "register-workspace-dot-dot": (
        lambda t: enroll(t.a, workspace_id=f"{t.a.workspace_id}/.."),
        (400, "InvalidCustomerId"),
    ),
    "logs-dcr-dot-dot": (
        lambda t: logs(t.a, RECORDS_BODY, immutable_id=f"../{t.a.immutable_id}"),
        NOT_GRANTED,
    ),
    "logs-dcr-encoded-slash": (
        lambda t: logs(t.a, RECORDS_BODY, immutable_id=f"{t.b.immutable_id}%2f..%2f{t.a.immutable_id}"),
        NOT_GRANTED,
    ),
    "logs-stream-dot-dot": (
        lambda t: logs(t.a, RECORDS_BODY, stream=f"Custom-..%2f..%2f{t.b.stream.removeprefix('Custom-')}"),
        (400, "InvalidStream"),
    ),
    "logs-stream-of-b-on-a-rule": (lambda t: logs(t.a, RECORDS_BODY, stream=t.b.stream), NOT_GRANTED),
    # Unicode confusables in log types and streams
    **{
        f"collector-log-type-{name}": (
            lambda t, log_type=log_type: collector(t.a, RECORDS_BODY, log_type=log_type),
            BAD_LOG_TYPE,
        )
        for name, log_type in CONFUSABLE_LOG_TYPES.items()
    },
    "agent-log-type-cyrillic-o": (
        lambda t: agent(t.a, RECORDS_BODY, headers={"Log-Type": "H\u043estile_CL"}),
        BAD_LOG_TYPE,
    ),
    "query-resource-dot-dot": (lambda t: query(t.a, ".."), (404, "NotFound")),
    "query-resource-encoded-dot-dot": (lambda t: query(t.a, "%2e%2e%2fsummary"), (404, "NotFound")),
    **{
        f"query-workspace-{name}": (
            lambda t, template=template: query(t.a, workspace_id=traversal_id(t, template)),
            FORBIDDEN,
        )
        for name, template in TRAVERSAL_WORKSPACE_IDS.items()
    },
    "query-resource-cyrillic-a": (lambda t: query(t.a, "us\u0430ge"), (404, "NotFound")),
    "query-resource-fullwidth": (lambda t: query(t.a, "\uff55\uff53\uff41\uff47\uff45"), (404, "NotFound")),
    "query-reader-key-of-b": (lambda t: query(t.a, authorization=f"Key {t.b.created.reader_key}"), FORBIDDEN),
    "query-shared-key-as-reader-key": (
        lambda t: query(t.a, authorization=f"Key {t.a.created.primary_key}"),
        FORBIDDEN,
    ),
    "query-bearer-token-of-a-rule": (
        lambda t: query(t.a, authorization=f"Bearer {t.a.bearer_token()}"),
        FORBIDDEN,
    ),
    "query-forged-continuation": (
        lambda t: query(t.a, params={"continuation": "e30.AAAA"}),
        (400, "InvalidQuery"),
    ),
    "query-1mib-parameter": (lambda t: query(t.a, params={"computer": "c" * MIB}), (400, "InvalidQuery")),
    "query-year-99999": (
        lambda t: query(t.a, params={"from": "99999-01-01T00:00:00Z"}),
        (400, "InvalidQuery"),
    ),
    "logs-stream-cyrillic-a": (
        lambda t: logs(t.a, RECORDS_BODY, stream=t.a.stream.replace("C", "\u0421", 1)),
        (400, "InvalidStream"),
    ),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_given_a_hostile_request_then_it_is_refused_with_its_code_and_nothing_is_written(
    case: str, tenants: Tenants, figures: Figures
) -> None:
    send, expected = CORPUS[case]

    answer = tenants.storage.refused_without_writes(lambda: observed(send(tenants), figures))

    figures.add(SECTION, "named cases tried")
    assert answer == expected


def observed(response: func.HttpResponse, figures: Figures) -> func.HttpResponse:
    """Counts the answers in the figures: every request, and the 5xx among them (must stay 0)."""
    figures.add(SECTION, "requests sent")
    figures.add(SECTION, "5xx seen", int(response.status_code >= 500))
    return response


def test_given_an_assertion_that_was_used_when_it_is_replayed_then_403_and_only_the_first_is_stored(
    tenants: Tenants, figures: Figures
) -> None:
    a = tenants.a
    assertion = f"Bearer {a.assertion(agent_url(a.workspace_id), RECORDS_BODY, jti=uuid.uuid4().hex)}"
    before = tenants.storage.snapshot()
    first = observed(agent(a, RECORDS_BODY, authorization=assertion), figures)
    assert first.status_code == 200, first.get_body()
    assert [w for w in tenants.storage.snapshot().written_since(before) if w.startswith("blob")] != []

    replayed = tenants.storage.refused_without_writes(
        lambda: observed(agent(a, RECORDS_BODY, authorization=assertion), figures)
    )

    figures.add(SECTION, "named cases tried")
    assert replayed == FORBIDDEN


# --- property-based fuzzing of the ingest surface ---------------------------------------------------

MUTABLE_HEADERS = (
    "authorization",
    "content-type",
    "content-encoding",
    "content-length",
    "log-type",
    "x-ms-date",
    "time-generated-field",
    "x-ms-azureresourceid",
)
header_values = st.one_of(
    st.none(),  # the header left out
    st.text(max_size=80),
    st.sampled_from(["", "gzip", JSON, "SharedKey x:y", "Bearer ", "-1", "99999999999", LOG_TYPE]),
)
records = st.lists(
    st.dictionaries(
        st.sampled_from(["Computer", "Message", "TimeGenerated", "n"]), st.text(max_size=20) | st.integers()
    ),
    max_size=3,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A valid body, or one broken in a way a client or an attacker would break it."""
    body = json.dumps(draw(records)).encode("utf-8")
    match draw(st.sampled_from(["valid", "truncated", "byte-flipped", "random", "gzip", "nested"])):
        case "truncated":
            return body[: draw(st.integers(0, max(0, len(body) - 1)))]
        case "byte-flipped":
            at = draw(st.integers(0, len(body) - 1))
            return body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
        case "random":
            return draw(st.binary(max_size=200))
        case "gzip":
            return gzip.compress(body)
        case "nested":
            return deep_arrays(draw(st.integers(1, 5000)))
    return body


@dataclass(frozen=True)
class Mutation:
    route: str
    body: bytes
    sign_the_sent_body: bool  # else the credential covers the original body
    impersonate_b: bool  # the route names B while the credential is A's
    headers: dict[str, str | None]


mutations = st.builds(
    Mutation,
    route=st.sampled_from(["collector", "agent", "logs"]),
    body=bodies(),
    sign_the_sent_body=st.booleans(),
    impersonate_b=st.booleans(),
    headers=st.dictionaries(st.sampled_from(MUTABLE_HEADERS), header_values, max_size=3),
)


def mutated_request(tenants: Tenants, mutation: Mutation) -> Callable[[], func.HttpResponse]:
    """A's valid request on the route, then the mutation applied to its body, credential and headers."""
    a, b = tenants.a, tenants.b
    signed_body = mutation.body if mutation.sign_the_sent_body else RECORDS_BODY
    target = b if mutation.impersonate_b else a
    match mutation.route:
        case "collector":
            request = signed_request(
                workspace_id=target.workspace_id,
                key_b64=a.created.primary_key,
                body=mutation.body,
                log_type=LOG_TYPE,
                sign_content_length=len(signed_body),
            )
            headers = dict(request.headers)
        case "agent":
            token = a.assertion(agent_url(target.workspace_id), signed_body)
            headers = {"content-type": JSON, "log-type": LOG_TYPE, "authorization": f"Bearer {token}"}
        case _:
            headers = {"content-type": JSON, "authorization": f"Bearer {a.bearer_token()}"}
    for name, value in mutation.headers.items():
        headers.pop(name, None)
        if value is not None:
            headers[name] = value
    match mutation.route:
        case "collector":
            return lambda: post_data_collector(headers, mutation.body)
        case "agent":
            return lambda: post_agent(target.workspace_id, headers, mutation.body)
    return lambda: post_logs_ingestion(target.immutable_id, target.stream, headers, mutation.body)


def test_given_mutations_of_a_valid_request_then_never_a_5xx_and_a_refusal_writes_nothing(
    tenants: Tenants, scale: Scale, figures: Figures
) -> None:
    a_container = f"ws-{tenants.a.workspace_id}"

    @settings(
        max_examples=scale.fuzz_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutation=mutations)
    def check(mutation: Mutation) -> None:
        send = mutated_request(tenants, mutation)
        before = tenants.storage.snapshot()
        response = observed(send(), figures)
        figures.add(SECTION, "fuzz examples")
        if response.status_code < 300:
            # Accepted: A's own valid request survived the mutation; one blob, in A's container only.
            figures.add(SECTION, "fuzz examples accepted")
            written = [
                w for w in tenants.storage.snapshot().written_since(before) if not w.startswith("dailyusage")
            ]
            assert len(written) == 1 and written[0].startswith(f"blob {a_container}/raw/"), written
            return
        refusal_code(response)
        assert tenants.storage.snapshot().written_since(before) == []

    check()


# --- property-based fuzzing of the query surface's parameters ----------------------------------------

QUERY_PARAMETERS = (
    "from",
    "to",
    "granularity",
    "limit",
    "continuation",
    "computer",
    "log_type",
    "object",
    "counter",
    "instance",
    "event_id",
    "level",
    "facility",
    "severity",
)
parameter_values = st.one_of(
    st.text(max_size=60),
    st.integers(-(10**20), 10**20).map(str),
    st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
    st.sampled_from(
        ["hour", "day", "minute", "1000", "1001", "0", "NaN", "e30.AAAA", "2026-11-22T00:00:00+14:00"]
    ),
)
query_requests = st.tuples(
    st.sampled_from(["usage", "perf", "events", "syslog", "summary"]) | st.text(min_size=1, max_size=20),
    st.dictionaries(st.sampled_from(QUERY_PARAMETERS) | st.text(max_size=10), parameter_values, max_size=4),
)


def test_given_any_query_parameters_then_never_a_5xx_and_nothing_is_written(
    tenants: Tenants, scale: Scale, figures: Figures
) -> None:
    @settings(
        max_examples=scale.fuzz_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(request=query_requests)
    def check(request: tuple[str, dict[str, str]]) -> None:
        resource, params = request
        response = observed(query(tenants.a, resource, params), figures)
        figures.add(SECTION, "query fuzz examples")
        if response.status_code != 200:
            refusal_code(response)

    # Reading writes nothing, so one look at storage around the whole run shows what any example wrote.
    before = tenants.storage.snapshot()
    check()
    assert tenants.storage.snapshot().written_since(before) == []


# --- last in the module: the stalled body sent when the local host started ---------------------------


def test_given_a_body_that_stops_half_way_then_the_host_drops_it_within_its_timeout_and_stores_nothing(
    wire: Wire, figures: Figures
) -> None:
    answer = wire.stalled.result(timeout=CLOSE_BOUND_SECONDS + 10)

    figures.add(SECTION, "stalled bodies sent")
    figures.record(SECTION, "stalled body dropped after (s)", round(answer.seconds, 1))
    assert answer.seconds < CLOSE_BOUND_SECONDS
    assert answer.status is None or 400 <= answer.status < 500
    assert [name for name in wire.blobs() if f"/{wire.stalled_log_type}/" in name] == []
