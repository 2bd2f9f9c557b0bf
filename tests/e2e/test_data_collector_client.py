"""The HTTP Data Collector API end to end with the real, unmodified PyPI client
`azure-log-analytics-data-collector-api` (`datacollectorapi.client.DataCollectorAPIClient`): it builds
the URL, signs with SharedKey and sends with `requests`, and the records reach the SQL aggregates
that `sluice usage` shows.

What is redirected, and only that: the client always posts to
`https://{workspace id}.{endpoint}/api/logs?api-version=2016-04-01`, a per-workspace host name that
cannot resolve here (Azure's DNS gives each workspace its own name; the local host is one address).
The client is given the endpoint suffix `ods.opinsights.sluice.invalid` (`.invalid` never resolves,
so a broken redirect fails instead of reaching anything real), and every `requests.Session` the
client creates gets a transport adapter mounted for exactly `https://{demo workspace id}.{suffix}/`.
That adapter sends the request the client prepared to the local host's `https://127.0.0.1:{port}`,
with the same method, path, query, headers and body; it sets `Host` to the original host name (what
the client would have sent to Azure), verifies TLS against the local host's generated CA file, skips
proxies (the connection is to loopback) and bounds the request with a timeout (the client sets
none). Nothing the client signs or sends is changed, and any other URL goes through `requests`'
usual adapters.

The client checks Log-Type itself before it sends anything, with the same rule as the service, so a
bad Log-Type never reaches the wire from it: one test shows that, and then replays a request the
client signed and sent with only `Log-Type` changed (it is not part of the string to sign) to show
the service's own 400 InvalidLogType."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from datacollectorapi.client import DataCollectorAPIClient
from datacollectorapi.helper import is_success
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response

from devhost.azurite import AzuritePorts
from shared import sharedkey
from shared.workspaces import new_shared_key
from tests.e2e.support import REQUEST_TIMEOUT_SECONDS, LocalHost, eventually, host_environment
from tests.support.storage import blob_service, container_blob_names

pytestmark = pytest.mark.e2e

ENDPOINT_SUFFIX = "ods.opinsights.sluice.invalid"
API_PATH = "/api/logs?api-version=2016-04-01"
PROCESSED_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Exchange:
    built: PreparedRequest  # as the client prepared it
    forwarded: PreparedRequest  # as it went to the local host


class LocalHostRedirect(HTTPAdapter):
    """The transport for the client's unresolvable workspace host: the same request, sent to the
    local host over HTTPS checked against its CA."""

    def __init__(self, host: LocalHost, ca_file: str) -> None:
        super().__init__(max_retries=0)
        self.netloc = f"127.0.0.1:{host.port}"
        self.ca_file = ca_file
        self.exchanges: list[Exchange] = []

    def send(  # type: ignore[override]
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        assert request.url is not None
        original = urlsplit(request.url)
        forwarded = request.copy()
        forwarded.url = urlunsplit(("https", self.netloc, original.path, original.query, original.fragment))
        forwarded.headers["Host"] = original.netloc
        self.exchanges.append(Exchange(request.copy(), forwarded))
        return super().send(
            forwarded,
            stream=stream,
            timeout=REQUEST_TIMEOUT_SECONDS if timeout is None else timeout,
            verify=self.ca_file,
            cert=cert,
            proxies={},
        )


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    """One local host for the module; each test uses its own Log-Type in the demo workspace."""
    tmp_path = tmp_path_factory.mktemp("data-collector-client")
    local = LocalHost(
        state_dir=tmp_path / "state",
        logs=tmp_path / "logs",
        env=host_environment(tmp_path, AzuritePorts.free()),
    )
    try:
        yield local.start()
    finally:
        local.kill()


@pytest.fixture
def redirect(host: LocalHost, monkeypatch: pytest.MonkeyPatch) -> LocalHostRedirect:
    """Mounts the redirect in every `requests.Session` made during the test (the client calls
    `requests.post`, which makes a new one per call), for the demo workspace's host only."""
    demo = host.demo()
    adapter = LocalHostRedirect(host, demo["ca_file"])
    prefix = f"https://{demo['workspace_id']}.{ENDPOINT_SUFFIX}/"
    session_init = requests.Session.__init__

    def init_and_mount(session: requests.Session) -> None:
        session_init(session)
        session.mount(prefix, adapter)

    monkeypatch.setattr(requests.Session, "__init__", init_and_mount)
    return adapter


def demo_client(host: LocalHost, *, key: str | None = None) -> DataCollectorAPIClient:
    demo = host.demo()
    return DataCollectorAPIClient(demo["workspace_id"], key or demo["primary_key"], endpoint=ENDPOINT_SUFFIX)


def body_bytes(request: PreparedRequest) -> bytes:
    body = request.body
    assert body is not None
    return body.encode("utf-8") if isinstance(body, str) else body


def raw_blobs(host: LocalHost, log_type: str) -> list[str]:
    """The demo workspace's raw blobs of one Log-Type, read with the storage SDK directly."""
    names = container_blob_names(blob_service(host.env["SLUICE_STORAGE"]), host.demo()["workspace_id"])
    return [name for name in names if f"/{log_type}/" in name]


def test_given_the_unmodified_client_when_it_posts_then_200_and_usage_shows_the_records(
    host: LocalHost, redirect: LocalHostRedirect
) -> None:
    demo = host.demo()
    workspace_id = demo["workspace_id"]
    log_type = "DataCollectorClient"
    records = [
        {"Computer": "web-1", "Message": "started"},
        {"Computer": "web-1", "Message": "ready"},
        {"Computer": "web-2", "Message": "hello"},
    ]

    response = demo_client(host).post_data(log_type, records)

    assert response.status_code == 200, response.text
    assert is_success(response.status_code)
    assert response.content == b""
    (exchange,) = redirect.exchanges
    built, forwarded = exchange.built, exchange.forwarded
    assert built.url == f"https://{workspace_id}.{ENDPOINT_SUFFIX}{API_PATH}"
    assert forwarded.url == f"{host.endpoint}{API_PATH}"
    assert forwarded.method == built.method == "POST"
    assert forwarded.body == built.body
    assert dict(forwarded.headers) == {**built.headers, "Host": f"{workspace_id}.{ENDPOINT_SUFFIX}"}
    assert built.headers["Log-Type"] == log_type
    # The client's signature is the one the README specifies, over the body it sent.
    assert built.headers["Authorization"] == sharedkey.authorization_header(
        workspace_id,
        demo["primary_key"],
        content_length=len(body_bytes(built)),
        content_type="application/json",
        x_ms_date=built.headers["x-ms-date"],
    )
    rows = eventually(
        lambda: [r for r in host.usage() if r["log_type"] == log_type] or None,
        timeout=PROCESSED_TIMEOUT_SECONDS,
        what=f"usage rows of {log_type} appear",
    )
    assert sorted((r["log_type"], r["computer"], r["records"]) for r in rows) == [
        (log_type, "web-1", 2),
        (log_type, "web-2", 1),
    ]


def test_given_a_wrong_shared_key_when_the_client_posts_then_it_returns_the_403_and_nothing_is_stored(
    host: LocalHost, redirect: LocalHostRedirect
) -> None:
    log_type = "DataCollectorWrongKey"

    response = demo_client(host, key=new_shared_key()).post_data(log_type, [{"Computer": "web-1"}])

    assert response.status_code == 403, response.text
    assert not is_success(response.status_code)
    with pytest.raises(requests.HTTPError):
        response.raise_for_status()
    assert response.headers["x-ms-error-code"] == "InvalidAuthorization"
    assert response.json()["Error"] == "InvalidAuthorization"
    assert len(redirect.exchanges) == 1
    assert raw_blobs(host, log_type) == []


def test_given_a_bad_log_type_then_the_client_refuses_it_and_the_service_answers_400_invalid_log_type(
    host: LocalHost, redirect: LocalHostRedirect
) -> None:
    client = demo_client(host)
    bad_log_type = "bad-type!"

    # The client's own check: nothing is sent.
    with pytest.raises(Exception, match="log_type must only contain") as refused:
        client.post_data(bad_log_type, [{"Computer": "web-1"}])
    assert type(refused.value) is Exception
    assert redirect.exchanges == []

    # The service's check: a request the client signed and sent, with only Log-Type changed.
    accepted = client.post_data("DataCollectorProbe", [{"Computer": "web-1"}])
    assert accepted.status_code == 200, accepted.text
    (exchange,) = redirect.exchanges
    blobs_before = container_blob_names(blob_service(host.env["SLUICE_STORAGE"]), host.demo()["workspace_id"])
    replay = exchange.built.copy()
    replay.headers["Log-Type"] = bad_log_type
    with requests.Session() as session:  # the redirect is mounted in it too
        response = session.send(replay)

    assert response.status_code == 400, response.text
    assert response.headers["x-ms-error-code"] == "InvalidLogType"
    assert response.json()["Error"] == "InvalidLogType"
    assert redirect.exchanges[-1].forwarded.headers["Log-Type"] == bad_log_type
    assert (
        container_blob_names(blob_service(host.env["SLUICE_STORAGE"]), host.demo()["workspace_id"])
        == blobs_before
    )
