"""Tenants with every credential kind, the ingest and query routes' real handlers called in-process as
the Functions host calls them, and a look at everything storage holds, for the hostile-input and
cross-tenant tests of the reliability suite.

A tenant is a workspace with its shared keys, enrollment key and reader key, an enrolled agent (key
pair and certificate) and a data collection rule granted to a principal of the test issuer
(tests.support.tokens). `StorageSnapshot` reads blobs and tables with the SDK directly, independently
of the code under test, so "nothing was written" is checked against storage itself."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func
import orjson
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

import ingest_agent
import ingest_http
import ingest_logs
import query_api
import register_agent
from shared.agents import EnrollmentRequest
from shared.audit import AuditAction
from shared.audit_store import AUDIT_TABLE
from shared.azure_limits import DAILY_USAGE_TABLE
from shared.azure_storage import AGENTS_TABLE, WORKSPACES_TABLE
from shared.dcrs import DCRS_TABLE, create_rule
from shared.plans import Plan
from shared.runtime import reset_services
from shared.settings import SqlDialect
from shared.workspaces import NewWorkspace
from tests.support.agent_credentials import AgentCredentials, client_assertion, new_agent_credentials
from tests.support.runtime import Runtime, SqlTarget, configure_runtime
from tests.support.storage import start_azurite
from tests.support.tokens import ISSUER, claims, issuer_key, jwk_dict, sign

ORIGIN = "https://127.0.0.1"
DATA_COLLECTOR_API = {"api-version": "2016-04-01"}
LOGS_INGESTION_API = {"api-version": "2023-01-01"}
LOG_TYPE = "Hostile_CL"
RECORDS_BODY = b'[{"Computer":"host-1","Message":"hello"}]'
# Tables a refused request must leave as they were (the audit log is compared entry by entry).
WATCHED_TABLES = (WORKSPACES_TABLE, AGENTS_TABLE, DCRS_TABLE, DAILY_USAGE_TABLE)


@dataclass(frozen=True)
class Tenant:
    created: NewWorkspace
    agent: AgentCredentials
    agent_id: str
    immutable_id: str
    stream: str
    principal: str

    @property
    def workspace_id(self) -> str:
        return self.created.workspace.workspace_id

    def bearer_token(self) -> str:
        """An access token of the test issuer for the principal granted on this tenant's rule."""
        return sign(claims(self.principal))

    def assertion(self, url: str, body: bytes, *, jti: str | None = None) -> str:
        return client_assertion(self.agent, agent_id=self.agent_id, url=url, body=body, jti=jti)


@contextmanager
def tenant_runtime(azurite_connection_string: str, workspace: Path) -> Iterator[Runtime]:
    """The real services on Azurite and SQLite, with the test issuer trusted for bearer tokens and
    forwarded client certificates honoured (as App Service forwards them), for a module of tests."""
    jwks = workspace / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_dict(issuer_key())]}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SLUICE_TOKEN_ISSUER", ISSUER)
        monkeypatch.setenv("SLUICE_TOKEN_JWKS_URI", str(jwks))
        monkeypatch.setenv("SLUICE_TRUST_FORWARDED_CLIENT_CERT", "true")
        try:
            yield configure_runtime(
                monkeypatch,
                storage_connection_string=azurite_connection_string,
                sql=SqlTarget(SqlDialect.SQLITE, str(workspace / "sluice.db")),
                secrets_dir=workspace / "secrets",
            )
        finally:
            reset_services()


def new_tenant(runtime: Runtime) -> Tenant:
    """A premium workspace (its rate never refuses a test's posts) with an agent and a rule."""
    created = runtime.new_workspace(Plan.PREMIUM)
    workspace_id = created.workspace.workspace_id
    agent = new_agent_credentials(f"agent-{workspace_id[:8]}")
    enrolled = runtime.services.enrollment.register(
        EnrollmentRequest(
            workspace_id=workspace_id,
            enrollment_key=created.enrollment_key,
            certificate_pem=agent.certificate_pem,
        )
    )
    principal = str(uuid.uuid4())
    stream = f"Custom-Hostile{uuid.uuid4().hex[:8]}_CL"
    rule = create_rule(
        rules=runtime.services.dcrs,
        workspaces=runtime.services.registry,
        workspace_id=workspace_id,
        streams=[stream],
        principals=[principal],
    )
    return Tenant(created, agent, enrolled.agent_id, rule.immutable_id, stream, principal)


def agent_url(workspace_id: str) -> str:
    return f"{ORIGIN}/api/workspaces/{workspace_id}/logs"


def logs_ingestion_url(immutable_id: str, stream: str) -> str:
    return f"{ORIGIN}/dataCollectionRules/{immutable_id}/streams/{stream}"


def call(
    handler: Callable[[func.HttpRequest], func.HttpResponse],
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str = "POST",
    params: Mapping[str, str] | None = None,
    route_params: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    """The handler given the request as the Functions host builds it."""
    request = func.HttpRequest(
        method,
        url,
        headers=dict(headers),
        params=dict(params or {}),
        route_params=dict(route_params or {}),
        body=body,
    )
    return handler(request)


def post_data_collector(
    headers: Mapping[str, str], body: bytes, *, params: Mapping[str, str] = DATA_COLLECTOR_API
) -> func.HttpResponse:
    return call(ingest_http.main, f"{ORIGIN}/api/logs", headers, body, params=params)


def post_agent(workspace_id: str, headers: Mapping[str, str], body: bytes) -> func.HttpResponse:
    route = {"workspace_id": workspace_id}
    return call(
        ingest_agent.main,
        agent_url(workspace_id),
        headers,
        body,
        params=DATA_COLLECTOR_API,
        route_params=route,
    )


def post_registration(body: bytes) -> func.HttpResponse:
    return call(
        register_agent.main, f"{ORIGIN}/api/agents/register", {"Content-Type": "application/json"}, body
    )


def post_logs_ingestion(
    immutable_id: str, stream: str, headers: Mapping[str, str], body: bytes
) -> func.HttpResponse:
    url = logs_ingestion_url(immutable_id, stream)
    route = {"immutable_id": immutable_id, "stream": stream}
    return call(ingest_logs.main, url, headers, body, params=LOGS_INGESTION_API, route_params=route)


def get_query(
    workspace_id: str, resource: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None
) -> func.HttpResponse:
    url = f"{ORIGIN}/api/workspaces/{workspace_id}/{resource}"
    route = {"workspace_id": workspace_id, "resource": resource}
    return call(query_api.main, url, headers, b"", method="GET", params=params, route_params=route)


def registration_body(workspace_id: str, enrollment_key: str, certificate_pem: str) -> bytes:
    return json.dumps(
        {"workspace_id": workspace_id, "enrollment_key": enrollment_key, "certificate": certificate_pem}
    ).encode("utf-8")


def refusal_code(response: func.HttpResponse) -> str:
    """The machine-readable code of a refusal: in either route's error shape and in x-ms-error-code,
    the same; fails the test on anything but a 4xx carrying one."""
    status = response.status_code
    assert 400 <= status < 500, f"expected a 4xx refusal, got {status}: {response.get_body()[:300]!r}"
    document = orjson.loads(response.get_body())
    code = document["Error"] if "Error" in document else document["error"]["code"]
    assert isinstance(code, str) and code, document
    assert response.headers.get("x-ms-error-code") == code
    return code


@dataclass(frozen=True)
class StorageSnapshot:
    """Every blob in every container, the watched tables' entities, and the audit log's entries by
    action, as storage holds them."""

    containers: frozenset[str]
    blobs: frozenset[tuple[str, str]]
    tables: Mapping[str, frozenset[str]]
    audit_actions: Counter[str]

    @classmethod
    def take(
        cls, blob_service: BlobServiceClient, tables: TableServiceClient, watched_containers: Iterable[str]
    ) -> StorageSnapshot:
        """Blobs are listed in `watched_containers` (the tenants' own); any new container shows too."""
        containers = frozenset(container.name for container in blob_service.list_containers())
        blobs = frozenset(
            (container, blob.name)
            for container in sorted(containers.intersection(watched_containers))
            for blob in blob_service.get_container_client(container).list_blobs()
        )
        existing = {table.name for table in tables.list_tables()}
        watched = {
            name: frozenset(
                json.dumps(dict(entity), sort_keys=True, default=str)
                for entity in tables.get_table_client(name).list_entities()
            )
            if name in existing
            else frozenset()
            for name in WATCHED_TABLES
        }
        audit = (
            Counter(
                str(e["action"])
                for e in tables.get_table_client(AUDIT_TABLE).list_entities()
                if "action" in e
            )
            if AUDIT_TABLE in existing
            else Counter()
        )
        return cls(containers=containers, blobs=blobs, tables=watched, audit_actions=audit)

    def written_since(self, before: StorageSnapshot) -> list[str]:
        """What changed, as readable lines; authentication-failure records are expected and left out."""
        changes = [f"container {name}" for name in sorted(self.containers - before.containers)]
        changes += [f"blob {container}/{name}" for container, name in sorted(self.blobs - before.blobs)]
        for name, entities in self.tables.items():
            changes += [f"{name} row {entity}" for entity in sorted(entities ^ before.tables[name])]
        audit = self.audit_actions - before.audit_actions
        changes += [
            f"audit {action} x{count}"
            for action, count in audit.items()
            if action != AuditAction.AUTH_FAILURES
        ]
        return changes


class StorageWatch:
    """Snapshots of the tenants' storage with the audit log's pending records written first."""

    def __init__(self, runtime: Runtime, tenants: Iterable[Tenant]) -> None:
        self.runtime = runtime
        self.containers = [f"ws-{t.workspace_id}" for t in tenants]
        self._blobs = BlobServiceClient.from_connection_string(runtime.storage_connection_string)
        self._tables = TableServiceClient.from_connection_string(runtime.storage_connection_string)

    def snapshot(self) -> StorageSnapshot:
        self.runtime.services.auth_failures.flush()
        return StorageSnapshot.take(self._blobs, self._tables, self.containers)

    def refused_without_writes(self, send: Callable[[], func.HttpResponse]) -> tuple[int, str]:
        """Sends, checks the answer is a 4xx with its code and that storage holds nothing new."""
        before = self.snapshot()
        response = send()
        code = refusal_code(response)
        assert self.snapshot().written_since(before) == []
        return response.status_code, code


@dataclass(frozen=True)
class Tenants:
    """Two tenants, A (whose credentials are used) and B (the target), and a watch on their storage."""

    a: Tenant
    b: Tenant
    storage: StorageWatch


@contextmanager
def two_tenants(workspace: Path) -> Iterator[Tenants]:
    """On an Azurite of their own: every snapshot lists whole tables, which stay as small as the
    module's own writes (the session's Azurite holds every other test's entities too)."""
    azurite = start_azurite(workspace / "azurite")
    try:
        with tenant_runtime(azurite.ports.connection_string, workspace) as runtime:
            a, b = new_tenant(runtime), new_tenant(runtime)
            yield Tenants(a, b, StorageWatch(runtime, (a, b)))
    finally:
        azurite.stop()
