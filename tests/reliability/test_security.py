"""Tenant isolation and secrecy, measured: every credential kind of workspace A against every route of
workspace B (ingest, agent ingest, registration, Logs Ingestion with B's rule, and each query
resource) is refused (401/403) and writes nothing into B (or anywhere), while the same credentials
are accepted on A's own routes; and no secret handled during a whole scenario (keys, signatures,
enrollment keys, reader keys, assertions, bearer tokens, private keys) appears in any log line,
in-process at DEBUG and in the local host's log files."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import azure.functions as func
import pytest

from devhost.azurite import REPO_ROOT
from shared.runtime import services
from shared.workspaces import new_shared_key, rotate_key
from tests.e2e.support import REQUEST_TIMEOUT_SECONDS, SLUICE_COMMAND, LocalHost
from tests.reliability.conftest import Figures
from tests.support.agent_credentials import client_assertion, new_agent_credentials
from tests.support.datacollector import documented_signature, rfc1123
from tests.support.hostile_secrets import Secrets, captured_at_debug
from tests.support.hostile_tenants import (
    LOG_TYPE,
    RECORDS_BODY,
    Tenant,
    Tenants,
    agent_url,
    get_query,
    logs_ingestion_url,
    new_tenant,
    post_agent,
    post_data_collector,
    post_logs_ingestion,
    post_registration,
    registration_body,
    two_tenants,
)
from tests.support.hostile_wire import RawTlsClient, signed_collector_head, started_local_host

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SECTION = "security"
JSON = "application/json"
REFUSED = (401, 403)
QUERY_RESOURCES = ("usage", "perf", "events", "syslog", "summary")


# --- credentials: each kind of A's, presented where a route takes a credential ----------------------


@dataclass(frozen=True)
class Credential:
    """One credential of a tenant: `headers(workspace_id, url, body)` authenticates a post on a route
    that names `workspace_id`; `secret` is what it offers where an enrollment key is asked for."""

    kind: str
    headers: Callable[[str, str, bytes], dict[str, str]]
    secret: str


def shared_key_headers(key: str) -> Callable[[str, str, bytes], dict[str, str]]:
    def headers(workspace_id: str, url: str, body: bytes) -> dict[str, str]:
        x_ms_date = rfc1123(datetime.now(UTC))
        signature = documented_signature(
            key, content_length=len(body), content_type=JSON, x_ms_date=x_ms_date
        )
        return {"Authorization": f"SharedKey {workspace_id}:{signature}", "x-ms-date": x_ms_date}

    return headers


def credentials_of(tenant: Tenant) -> list[Credential]:
    keys = tenant.created
    return [
        Credential("primary shared key", shared_key_headers(keys.primary_key), keys.primary_key),
        Credential("secondary shared key", shared_key_headers(keys.secondary_key), keys.secondary_key),
        Credential("enrollment key", shared_key_headers(keys.enrollment_key), keys.enrollment_key),
        Credential(
            "reader key", lambda ws, url, body: {"Authorization": f"Key {keys.reader_key}"}, keys.reader_key
        ),
        Credential(
            "agent certificate",
            lambda ws, url, body: {"X-ARR-ClientCert": tenant.agent.certificate_der_b64},
            tenant.agent.certificate_der_b64,
        ),
        Credential(
            "client assertion",
            lambda ws, url, body: {"Authorization": f"Bearer {tenant.assertion(url, body)}"},
            tenant.assertion(agent_url(tenant.workspace_id), RECORDS_BODY),
        ),
        Credential(
            "bearer token on its rule",
            lambda ws, url, body: {"Authorization": f"Bearer {tenant.bearer_token()}"},
            tenant.bearer_token(),
        ),
    ]


def credential_of(tenant: Tenant, kind: str) -> Credential:
    (found,) = [credential for credential in credentials_of(tenant) if credential.kind == kind]
    return found


# --- routes: each of a tenant's routes, taking any credential -----------------------------------------

Route = Callable[[Tenant, Credential], func.HttpResponse]


def data_collector_route(target: Tenant, credential: Credential) -> func.HttpResponse:
    headers = credential.headers(target.workspace_id, "/api/logs", RECORDS_BODY)
    return post_data_collector({"Content-Type": JSON, "Log-Type": LOG_TYPE, **headers}, RECORDS_BODY)


def agent_ingest_route(target: Tenant, credential: Credential) -> func.HttpResponse:
    headers = credential.headers(target.workspace_id, agent_url(target.workspace_id), RECORDS_BODY)
    return post_agent(
        target.workspace_id, {"Content-Type": JSON, "Log-Type": LOG_TYPE, **headers}, RECORDS_BODY
    )


def registration_route(target: Tenant, credential: Credential) -> func.HttpResponse:
    certificate = new_agent_credentials("intruder").certificate_pem
    return post_registration(registration_body(target.workspace_id, credential.secret, certificate))


def logs_ingestion_route(target: Tenant, credential: Credential) -> func.HttpResponse:
    url = logs_ingestion_url(target.immutable_id, target.stream)
    headers = credential.headers(target.workspace_id, url, RECORDS_BODY)
    return post_logs_ingestion(
        target.immutable_id, target.stream, {"Content-Type": JSON, **headers}, RECORDS_BODY
    )


def query_route(resource: str) -> Route:
    def read(target: Tenant, credential: Credential) -> func.HttpResponse:
        url = f"/api/workspaces/{target.workspace_id}/{resource}"
        return get_query(target.workspace_id, resource, credential.headers(target.workspace_id, url, b""))

    return read


ROUTES: dict[str, Route] = {
    "data collector": data_collector_route,
    "agent ingest": agent_ingest_route,
    "registration": registration_route,
    "logs ingestion": logs_ingestion_route,
    **{f"query {resource}": query_route(resource) for resource in QUERY_RESOURCES},
}
# Where each kind is accepted for its own workspace: the control row that shows the credentials work.
HOME_ROUTES = {
    "primary shared key": ("data collector", 200),
    "secondary shared key": ("data collector", 200),
    "enrollment key": ("registration", 201),
    "agent certificate": ("agent ingest", 200),
    "client assertion": ("agent ingest", 200),
    "bearer token on its rule": ("logs ingestion", 204),
    "reader key": ("query usage", 200),
}
KINDS = list(HOME_ROUTES)


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    with two_tenants(tmp_path_factory.mktemp("security")) as tenants:
        yield tenants


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("kind", KINDS)
def test_given_a_credential_of_workspace_a_on_a_route_of_workspace_b_then_refused_and_nothing_written(
    kind: str, route: str, tenants: Tenants, figures: Figures
) -> None:
    credential = credential_of(tenants.a, kind)

    status, code = tenants.storage.refused_without_writes(lambda: ROUTES[route](tenants.b, credential))

    figures.add(SECTION, "cross-tenant pairs tried")
    figures.add(SECTION, "cross-tenant refusals", int(status in REFUSED))
    assert status in REFUSED, (status, code)


@pytest.mark.parametrize("kind", list(HOME_ROUTES))
def test_given_a_credential_of_workspace_a_on_its_own_route_then_accepted(
    kind: str, tenants: Tenants
) -> None:
    route, status = HOME_ROUTES[kind]

    response = ROUTES[route](tenants.a, credential_of(tenants.a, kind))

    assert response.status_code == status, response.get_body()


# --- secrets absent from every log line ---------------------------------------------------------------


def recorded(credential: Credential, secrets: Secrets) -> Credential:
    """The credential, with every Authorization and certificate value it sends kept as a secret."""

    def headers(workspace_id: str, url: str, body: bytes) -> dict[str, str]:
        sent = credential.headers(workspace_id, url, body)
        for value in sent.values():
            secrets.add(f"{credential.kind} as sent", value.split(" ")[-1].split(":")[-1])
        return sent

    secrets.add(credential.kind, credential.secret)
    return Credential(credential.kind, headers, credential.secret)


def tenant_secrets(tenant: Tenant, secrets: Secrets) -> list[Credential]:
    secrets.add_private_key("agent private key", tenant.agent.key_pem)
    return [recorded(credential, secrets) for credential in credentials_of(tenant)]


def test_given_a_whole_scenario_in_process_at_debug_then_no_secret_is_in_any_log_line(
    tenants: Tenants, figures: Figures
) -> None:
    secrets = Secrets()
    with captured_at_debug() as capture:
        # Given a new workspace with its agent and rule, used as its owner uses it
        runtime = tenants.storage.runtime
        tenant = new_tenant(runtime)
        own = {c.kind: c for c in tenant_secrets(tenant, secrets)}
        accepted = [ROUTES[route](tenant, own[kind]).status_code for kind, (route, _) in HOME_ROUTES.items()]
        # When its keys are rotated, its credentials tried on B's routes, and bad requests refused
        for slot in ("primary", "secondary", "enrollment", "reader"):
            secrets.add(
                f"rotated {slot} key",
                rotate_key(secrets=services().secrets, workspace=tenant.created.workspace, which=slot),
            )
        refused = [
            ROUTES[route](tenants.b, credential).status_code
            for route in ROUTES
            for credential in own.values()
        ]
        assertion = own["client assertion"].headers(
            tenant.workspace_id, agent_url(tenant.workspace_id), RECORDS_BODY
        )
        first, replayed = (
            post_agent(
                tenant.workspace_id, {"Content-Type": JSON, "Log-Type": LOG_TYPE, **assertion}, RECORDS_BODY
            )
            for _ in range(2)
        )
        accepted.append(first.status_code)
        refused.append(replayed.status_code)
        runtime.services.auth_failures.flush()

    leaks = secrets.found_in(capture.lines)

    figures.add(SECTION, "log lines scanned (in-process)", len(capture.lines))
    figures.add(SECTION, "secrets searched (in-process)", secrets.count)
    figures.add(SECTION, "secrets found in logs", len(leaks))
    assert accepted == [*(status for _, status in HOME_ROUTES.values()), 200]
    assert set(refused) <= set(REFUSED), refused
    assert capture.lines, "the scenario logged nothing: the capture is not attached"
    assert leaks == []


@pytest.mark.parametrize("encode", ["plain", "base64", "urlsafe", "percent", "jwt-signature"])
def test_given_a_secret_logged_on_purpose_then_the_scan_finds_it(encode: str) -> None:
    secret = new_agent_credentials().key_pem.splitlines()[1] + "+/=="
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLW9mLWEtdG9rZW4"
    secrets = Secrets()
    secrets.add("key", secret)
    secrets.add("token", token)
    shown = {
        "plain": secret,
        "base64": base64.b64encode(secret.encode()).decode(),
        "urlsafe": secret.replace("+", "-").replace("/", "_").rstrip("="),
        "percent": quote(secret, safe=""),
        "jwt-signature": token.rsplit(".", 1)[1],
    }[encode]

    with captured_at_debug() as capture:
        logging.getLogger("sluice.test").debug("careless: %s", shown)

    assert [name for name, _ in secrets.found_in(capture.lines)] != []


DEV_ISSUER = "https://sluice.local/dev-issuer"
DIAGNOSTICS_ENDPOINT = "https://customer.table.core.windows.net"


def diagnostics_sas(permissions: str) -> str:
    """An account SAS as the portal makes one (its signature random: nothing reads the account)."""
    signature = quote(base64.b64encode(os.urandom(32)).decode("ascii"), safe="")
    return f"sv=2022-11-02&ss=t&srt=o&sp={permissions}&se=2099-01-01T00:00:00Z&spr=https&sig={signature}"


class Operator:
    """The local host at DEBUG with the development issuer, the `sluice` command run as an operator
    runs it (its stderr kept: the command's log), and a client over TLS."""

    def __init__(self, host: LocalHost) -> None:
        self.host = host
        self.client = RawTlsClient(host.port, host.demo()["ca_file"], timeout=REQUEST_TIMEOUT_SECONDS)
        self.command_logs: list[str] = []

    def sluice(self, *args: str, succeeds: bool = True) -> str:
        result = subprocess.run(
            [str(SLUICE_COMMAND), *args],
            cwd=REPO_ROOT,
            env=self.host.env,
            capture_output=True,
            timeout=REQUEST_TIMEOUT_SECONDS * 3,
        )
        self.command_logs += result.stderr.decode("utf-8", "replace").splitlines()
        assert (result.returncode == 0) == succeeds, result.stderr
        return result.stdout.decode("utf-8")

    def post(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int | None, Any]:
        answer = self.client.send(path, [*headers.items(), ("Content-Length", str(len(body)))], [body])
        return answer.status, json.loads(answer.body) if answer.body else None

    def log_lines(self) -> list[str]:
        files = (self.host.stdout, self.host.stderr)
        return [
            line for path in files for line in path.read_text("utf-8", "replace").splitlines()
        ] + self.command_logs

    def stored_secrets(self, secrets: Secrets) -> None:
        """Every secret the host keeps: each file of its secret store, and the issuer's private key."""
        for path in Path(self.host.env["SLUICE_SECRETS_DIR"]).rglob("*"):
            if path.is_file():
                secrets.add(f"stored secret {path.name}", path.read_text("utf-8").strip())
        issuer_key_file = self.host.state_dir / "dev-issuer" / "key.pem"
        secrets.add_private_key("development issuer key", issuer_key_file.read_text("utf-8"))


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    tmp_path = tmp_path_factory.mktemp("security-host")
    settings = {
        "SLUICE_LOG_LEVEL": "DEBUG",
        "SLUICE_TOKEN_ISSUER": DEV_ISSUER,
        "SLUICE_TOKEN_JWKS_URI": str(tmp_path / "state" / "dev-issuer" / "jwks.json"),
    }
    with started_local_host(tmp_path, settings) as host:
        yield Operator(host)


def test_given_a_whole_scenario_through_the_local_host_then_no_secret_is_in_its_logs(
    operator: Operator, figures: Figures
) -> None:
    secrets = Secrets()
    statuses: dict[str, int | None] = {}
    # Given a workspace made by the operator, with a rule for a principal
    created = json.loads(operator.sluice("workspace", "create", "--json"))
    workspace_id, principal, stream = created["workspace_id"], str(uuid.uuid4()), "Custom-Leak_CL"
    rule = json.loads(
        operator.sluice(
            *f"dcr create --workspace {workspace_id} --principal {principal} --stream {stream} --json".split()
        )
    )
    # When a client posts with its key, an agent enrolls and sends with assertions (one replayed),
    # a service principal uploads with a token, keys are rotated, bad credentials are refused and
    # diagnostics sources are added with a SAS (one refused for granting writes)
    head = signed_collector_head(workspace_id, created["primary_key"], RECORDS_BODY, log_type=LOG_TYPE)
    secrets.add("shared key signature", head["Authorization"].rsplit(":", 1)[1])
    statuses["signed post"], _ = operator.post("/api/logs?api-version=2016-04-01", head, RECORDS_BODY)
    agent = new_agent_credentials("leak-agent")
    secrets.add_private_key("agent private key", agent.key_pem)
    enrollment = registration_body(workspace_id, created["enrollment_key"], agent.certificate_pem)
    statuses["enrollment"], enrolled = operator.post(
        "/api/agents/register", {"Content-Type": JSON}, enrollment
    )
    path = f"/api/workspaces/{workspace_id}/logs?api-version=2016-04-01"
    assertion = client_assertion(
        agent, agent_id=enrolled["agent_id"], url=operator.host.endpoint + path, body=RECORDS_BODY
    )
    secrets.add("client assertion", assertion)
    agent_headers = {"Content-Type": JSON, "Log-Type": LOG_TYPE, "Authorization": f"Bearer {assertion}"}
    statuses["assertion"], _ = operator.post(path, agent_headers, RECORDS_BODY)
    statuses["replayed assertion"], _ = operator.post(path, agent_headers, RECORDS_BODY)
    token = operator.sluice("dev-token", "--principal", principal).strip()
    secrets.add("bearer token", token)
    upload = f"/dataCollectionRules/{rule['immutable_id']}/streams/{stream}?api-version=2023-01-01"
    statuses["token upload"], _ = operator.post(
        upload, {"Content-Type": JSON, "Authorization": f"Bearer {token}"}, RECORDS_BODY
    )
    statuses["tampered token"], _ = operator.post(
        upload, {"Content-Type": JSON, "Authorization": f"Bearer {token[:-4]}AAAA"}, RECORDS_BODY
    )
    for slot in ("primary", "enrollment", "reader"):
        operator.sluice("workspace", "rotate-key", workspace_id, "--which", slot)
    wrong = signed_collector_head(workspace_id, new_shared_key(), RECORDS_BODY, log_type=LOG_TYPE)
    statuses["wrong key"], _ = operator.post("/api/logs?api-version=2016-04-01", wrong, RECORDS_BODY)
    bad_enrollment = registration_body(workspace_id, created["secondary_key"], agent.certificate_pem)
    statuses["wrong enrollment key"], _ = operator.post(
        "/api/agents/register", {"Content-Type": JSON}, bad_enrollment
    )
    for permissions, succeeds in (("rl", True), ("rwdl", False)):  # a read-only SAS, and one refused
        sas = diagnostics_sas(permissions)
        secrets.add(f"SAS (sp={permissions})", sas)
        secrets.add(f"SAS signature (sp={permissions})", parse_qs(sas)["sig"][0])
        operator.sluice(
            *f"diag add-source --workspace {workspace_id} --table-endpoint {DIAGNOSTICS_ENDPOINT}".split(),
            f"--sas={sas}",
            succeeds=succeeds,
        )
    operator.stored_secrets(secrets)
    for name in ("primary_key", "secondary_key", "enrollment_key", "reader_key"):
        secrets.add(f"created {name}", created[name])

    lines = operator.log_lines()
    leaks = secrets.found_in(lines)

    figures.add(SECTION, "log lines scanned (local host)", len(lines))
    figures.add(SECTION, "secrets searched (local host)", secrets.count)
    figures.add(SECTION, "secrets found in logs", len(leaks))
    assert statuses == {
        "signed post": 200,
        "enrollment": 201,
        "assertion": 200,
        "replayed assertion": 403,
        "token upload": 204,
        "tampered token": 401,
        "wrong key": 403,
        "wrong enrollment key": 403,
    }
    assert leaks == []
