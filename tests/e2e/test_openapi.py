"""The OpenAPI document (shared/openapi.json) against the local host with schemathesis: the document the
host serves is the repository's; over the query routes, with the demo workspace's reader key, no
answer is a 5xx or strays from the document; over the ingest routes, without valid credentials,
every answer is a 4xx the document describes. Examples are bounded so the module runs in about a
minute."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devhost.azurite import REPO_ROOT, AzuritePorts
from tests.e2e.support import SLUICE_COMMAND, LocalHost, host_environment

DOCUMENT = REPO_ROOT / "shared" / "openapi.json"
QUERY_OPERATIONS = ("queryUsage", "queryPerf", "queryEvents", "querySyslog", "getSummary")
INGEST_OPERATIONS = ("postDataCollector", "postAgentLogs", "registerAgent", "postLogsIngestion")
QUERY_EXAMPLES = 40
INGEST_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    """One host for the module, its demo workspace with a reader key and a few usage rows."""
    tmp_path = tmp_path_factory.mktemp("openapi")
    ports = AzuritePorts.free()
    started = LocalHost(
        state_dir=tmp_path / "state", logs=tmp_path / "logs", env=host_environment(tmp_path, ports)
    )
    try:
        yield started.start()
    finally:
        started.kill()


def reader_key(host: LocalHost) -> str:
    """The demo workspace was made before it was asked for a reader key: the first rotation makes it."""
    result = subprocess.run(
        [
            str(SLUICE_COMMAND),
            "workspace",
            "rotate-key",
            host.demo()["workspace_id"],
            "--which",
            "reader",
            "--json",
        ],
        cwd=REPO_ROOT,
        env=host.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    key: str = json.loads(result.stdout)["value"]
    return key


def fetch(host: LocalHost, path: str) -> bytes:
    context = ssl.create_default_context(cafile=host.demo()["ca_file"])
    with urllib.request.urlopen(f"{host.endpoint}{path}", context=context, timeout=10) as response:  # noqa: S310 - https to the local host
        body: bytes = response.read()
        return body


def run_operations(
    host: LocalHost,
    operation_ids: tuple[str, ...],
    *,
    examples: int,
    prepare: Callable[[Any], dict[str, str]],
    expect: Callable[[Any, Any], None],
) -> int:
    """Runs each operation's generated cases against the host; `prepare(case)` gives the headers to
    send, `expect(case, response)` adds the test's own assertions. Returns how many cases ran."""
    schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text(encoding="utf-8")))
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") not in operation_ids:
            continue

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            nonlocal ran
            headers = prepare(case)
            response = case.call(
                base_url=host.endpoint, headers=headers, verify=host.demo()["ca_file"], timeout=30
            )
            case.validate_response(response, checks=CHECKS)
            expect(case, response)
            ran += 1

        exercise()
    return ran


def test_given_the_host_then_it_serves_the_repository_s_openapi_document(host: LocalHost) -> None:
    served = json.loads(fetch(host, "/api/openapi.json"))

    assert served == json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert served["openapi"].startswith("3.1")
    assert {"/api/logs", "/api/agents/register", "/api/workspaces/{workspace_id}/usage"} <= set(
        served["paths"]
    )


def test_given_the_query_routes_with_a_reader_key_then_no_5xx_and_every_answer_fits_the_document(
    host: LocalHost,
) -> None:
    workspace_id = host.demo()["workspace_id"]
    assert host.post_logs([{"Computer": "web-1", "Message": "hello"}], log_type="MyApp").status == 200
    authorization = f"Key {reader_key(host)}"
    statuses: list[int] = []

    def prepare(case: Any) -> dict[str, str]:
        case.path_parameters["workspace_id"] = workspace_id  # the workspace the key reads
        return {"Authorization": authorization}

    def expect(case: Any, response: Any) -> None:
        statuses.append(response.status_code)
        assert response.status_code in (200, 400), (case.path, case.query, response.text)

    ran = run_operations(host, QUERY_OPERATIONS, examples=QUERY_EXAMPLES, prepare=prepare, expect=expect)

    assert ran >= 5 * 10
    assert statuses.count(200) >= 5  # the generated queries are mostly valid ones


def test_given_the_ingest_routes_without_valid_credentials_then_every_answer_is_a_documented_4xx(
    host: LocalHost,
) -> None:
    def prepare(case: Any) -> dict[str, str]:
        return {}

    def expect(case: Any, response: Any) -> None:
        assert 400 <= response.status_code < 500, (case.path, response.status_code, response.text)

    ran = run_operations(host, INGEST_OPERATIONS, examples=INGEST_EXAMPLES, prepare=prepare, expect=expect)

    assert ran >= 4 * 10
