"""Agents end to end through the local host's TLS: enrollment, then certificate authentication in both
forms (the TLS client certificate the host forwards in X-ARR-ClientCert, and the client assertion),
and every refusal with its exact status, error code and effect on storage. One host serves the
module; every test makes its own agents and log types, so tests do not see each other's data."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devhost.azurite import REPO_ROOT, AzuritePorts
from shared.azure_storage import AGENTS_TABLE
from tests.e2e.support import (
    REQUEST_TIMEOUT_SECONDS,
    SLUICE_COMMAND,
    LocalHost,
    Response,
    eventually,
    host_environment,
)
from tests.support.agent_credentials import AgentCredentials, client_assertion, new_agent_credentials
from tests.support.storage import blob_service, container_blob_names

pytestmark = pytest.mark.e2e

DATA_COLLECTOR_QUERY = "?api-version=2016-04-01"
PROCESSED_TIMEOUT_SECONDS = 10.0
RECORDS = [{"Computer": "agent-1", "Message": "started"}, {"Computer": "agent-1", "Message": "ready"}]


@dataclass(frozen=True)
class Workspace:
    workspace_id: str
    enrollment_key: str


@dataclass(frozen=True)
class Agent:
    credentials: AgentCredentials
    agent_id: str


class Client:
    """An agent's side of the wire: HTTPS checked against the host's CA, with or without a TLS client
    certificate, and the `sluice` command run as an operator would."""

    def __init__(self, host: LocalHost, files: Path) -> None:
        self.host = host
        self._files = files
        self.storage: BlobServiceClient = blob_service(host.env["SLUICE_STORAGE"])

    def post(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        client_certificate: AgentCredentials | None = None,
    ) -> Response:
        context = ssl.create_default_context(cafile=self.host.demo()["ca_file"])
        if client_certificate is not None:
            context.load_cert_chain(*self.files_of(client_certificate))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.host.port, context=context, timeout=REQUEST_TIMEOUT_SECONDS
        )
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return Response(status=response.status, body=response.read())
        finally:
            connection.close()

    def files_of(self, credentials: AgentCredentials) -> tuple[Path, Path]:
        """Written on each use: ssl loads a client certificate only from files."""
        return credentials.write_files(self._files / credentials.thumbprint[:16])

    def enroll(self, workspace: Workspace, certificate_pem: str, *, key: str | None = None) -> Response:
        document = {
            "workspace_id": workspace.workspace_id,
            "enrollment_key": key or workspace.enrollment_key,
            "certificate": certificate_pem,
        }
        return self.post(
            "/api/agents/register", json.dumps(document).encode(), {"Content-Type": "application/json"}
        )

    def enrolled(self, workspace: Workspace, credentials: AgentCredentials | None = None) -> Agent:
        credentials = credentials or new_agent_credentials()
        response = self.enroll(workspace, credentials.certificate_pem)
        assert response.status == 201, response.body
        answer = response.json()
        assert answer["workspace_id"] == workspace.workspace_id
        assert answer["thumbprint"] == credentials.thumbprint
        return Agent(credentials, str(answer["agent_id"]))

    def send_with_certificate(
        self,
        workspace_id: str,
        log_type: str,
        *,
        credentials: AgentCredentials | None,
        extra_headers: dict[str, str] | None = None,
    ) -> Response:
        return self.post(
            logs_path(workspace_id),
            json.dumps(RECORDS).encode(),
            {**collector_headers(log_type), **(extra_headers or {})},
            client_certificate=credentials,
        )

    def send_with_assertion(
        self, workspace_id: str, log_type: str, *, agent: Agent, assertion: str | None = None
    ) -> Response:
        """Without a TLS client certificate; `assertion` replaces the valid one made for this body."""
        path = logs_path(workspace_id)
        body = json.dumps(RECORDS).encode()
        token = assertion or client_assertion(
            agent.credentials, agent_id=agent.agent_id, url=self.host.endpoint + path, body=body
        )
        return self.post(path, body, {**collector_headers(log_type), "Authorization": f"Bearer {token}"})

    def raw_blobs(self, workspace_id: str, log_type: str) -> list[str]:
        return [n for n in container_blob_names(self.storage, workspace_id) if f"/{log_type}/" in n]

    def blob_agent_ids(self, workspace_id: str, log_type: str) -> list[str]:
        container = self.storage.get_container_client(f"ws-{workspace_id}")
        return [
            container.get_blob_client(name).get_blob_properties().metadata["agent_id"]
            for name in self.raw_blobs(workspace_id, log_type)
        ]

    def agent_count(self, workspace_id: str) -> int:
        """Read from the agents table directly, independently of the code under test."""
        tables = TableServiceClient.from_connection_string(self.host.env["SLUICE_STORAGE"])
        entities = tables.get_table_client(AGENTS_TABLE).query_entities(
            "PartitionKey eq @ws", parameters={"ws": workspace_id}
        )
        return len(list(entities))

    def sluice(self, *args: str) -> Any:
        result = subprocess.run(
            [str(SLUICE_COMMAND), *args, "--json"],
            cwd=REPO_ROOT,
            env=self.host.env,
            capture_output=True,
            timeout=REQUEST_TIMEOUT_SECONDS * 3,
        )
        assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
        return json.loads(result.stdout)

    def new_workspace(self) -> Workspace:
        created = self.sluice("workspace", "create")
        return Workspace(created["workspace_id"], created["enrollment_key"])


def logs_path(workspace_id: str) -> str:
    return f"/api/workspaces/{workspace_id}/logs{DATA_COLLECTOR_QUERY}"


def collector_headers(log_type: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Log-Type": log_type}


def new_log_type() -> str:
    return f"Agent_{uuid.uuid4().hex[:12]}"


def assert_refused(response: Response, status: int, code: str) -> None:
    assert (response.status, response.json()["Error"]) == (status, code), response.body


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    tmp_path = tmp_path_factory.mktemp("agent-auth")
    host = LocalHost(
        state_dir=tmp_path / "state",
        logs=tmp_path / "logs",
        env=host_environment(tmp_path, AzuritePorts.free()),
    )
    try:
        yield Client(host.start(), tmp_path / "agents")
    finally:
        host.kill()


@pytest.fixture(scope="module")
def workspace(client: Client) -> Workspace:
    """The demo workspace; its enrollment key is where the local secret store keeps it."""
    workspace_id = client.host.demo()["workspace_id"]
    secrets = Path(client.host.env["SLUICE_SECRETS_DIR"])
    return Workspace(workspace_id, (secrets / f"ws-{workspace_id}-enrollment-key").read_text("utf-8"))


def test_given_an_enrolled_certificate_when_sending_with_it_over_tls_then_200_and_the_records_arrive(
    client: Client, workspace: Workspace
) -> None:
    agent = client.enrolled(workspace)
    log_type = new_log_type()

    response = client.send_with_certificate(workspace.workspace_id, log_type, credentials=agent.credentials)

    assert (response.status, response.body) == (200, b"")
    assert client.blob_agent_ids(workspace.workspace_id, log_type) == [agent.agent_id]
    rows = eventually(
        lambda: [r for r in client.host.usage() if r["log_type"] == log_type] or None,
        timeout=PROCESSED_TIMEOUT_SECONDS,
        what="usage rows for the agent's records",
    )
    assert [(r["computer"], r["records"]) for r in rows] == [("agent-1", 2)]


def test_given_an_enrolled_certificate_when_sending_a_client_assertion_without_tls_certificate_then_200(
    client: Client, workspace: Workspace
) -> None:
    agent = client.enrolled(workspace)
    log_type = new_log_type()

    response = client.send_with_assertion(workspace.workspace_id, log_type, agent=agent)

    assert (response.status, response.body) == (200, b"")
    assert client.blob_agent_ids(workspace.workspace_id, log_type) == [agent.agent_id]


def test_given_an_assertion_that_was_used_when_it_is_replayed_then_403_and_one_blob_only(
    client: Client, workspace: Workspace
) -> None:
    agent = client.enrolled(workspace)
    log_type = new_log_type()
    path = logs_path(workspace.workspace_id)
    assertion = client_assertion(
        agent.credentials,
        agent_id=agent.agent_id,
        url=client.host.endpoint + path,
        body=json.dumps(RECORDS).encode(),
    )

    first = client.send_with_assertion(workspace.workspace_id, log_type, agent=agent, assertion=assertion)
    replayed = client.send_with_assertion(workspace.workspace_id, log_type, agent=agent, assertion=assertion)

    assert first.status == 200
    assert_refused(replayed, 403, "InvalidAuthorization")
    assert client.blob_agent_ids(workspace.workspace_id, log_type) == [agent.agent_id]


NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"body": b'[{"Computer": "other"}]'}, id="body-hash-of-another-body"),
        pytest.param(
            {"issued_at": NOW - timedelta(minutes=40), "lifetime": timedelta(minutes=10)},
            id="expired-beyond-the-clock-skew",
        ),
        pytest.param({"lifetime": timedelta(minutes=11)}, id="lifetime-over-10-minutes"),
        pytest.param({"url": "https://127.0.0.1/api/logs"}, id="audience-of-another-endpoint"),
    ],
)
def test_given_an_assertion_that_does_not_hold_then_403_and_nothing_is_stored(
    client: Client, workspace: Workspace, claims: dict[str, Any]
) -> None:
    agent = client.enrolled(workspace)
    log_type = new_log_type()
    path = logs_path(workspace.workspace_id)
    arguments: dict[str, Any] = {
        "agent_id": agent.agent_id,
        "url": client.host.endpoint + path,
        "body": json.dumps(RECORDS).encode(),
        **claims,
    }
    assertion = client_assertion(agent.credentials, **arguments)

    response = client.send_with_assertion(workspace.workspace_id, log_type, agent=agent, assertion=assertion)

    assert_refused(response, 403, "InvalidAuthorization")
    assert client.raw_blobs(workspace.workspace_id, log_type) == []


def test_given_a_revoked_agent_then_its_next_requests_in_both_forms_are_403(
    client: Client, workspace: Workspace
) -> None:
    agent = client.enrolled(workspace)
    log_type = new_log_type()
    ws = workspace.workspace_id
    assert client.send_with_certificate(ws, log_type, credentials=agent.credentials).status == 200
    assert client.send_with_assertion(ws, log_type, agent=agent).status == 200

    revoked = client.sluice("agent", "revoke", "--workspace", ws, agent.agent_id)

    assert (revoked["agent_id"], revoked["state"]) == (agent.agent_id, "revoked")
    assert_refused(
        client.send_with_certificate(ws, log_type, credentials=agent.credentials), 403, "InvalidAuthorization"
    )
    assert_refused(client.send_with_assertion(ws, log_type, agent=agent), 403, "InvalidAuthorization")
    assert client.blob_agent_ids(ws, log_type) == [agent.agent_id] * 2


def test_given_an_expired_certificate_when_enrolling_then_400_invalid_certificate_and_no_agent(
    client: Client, workspace: Workspace
) -> None:
    now = datetime.now(UTC)
    expired = new_agent_credentials(not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    agents_before = client.agent_count(workspace.workspace_id)

    response = client.enroll(workspace, expired.certificate_pem)

    assert_refused(response, 400, "InvalidCertificate")
    assert client.agent_count(workspace.workspace_id) == agents_before


def test_given_a_certificate_that_expired_after_enrollment_then_both_forms_are_403_and_nothing_stored(
    client: Client, workspace: Workspace
) -> None:
    # Certificates carry whole seconds; a few of them are enough to enroll and then see it expire.
    not_after = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    agent = client.enrolled(workspace, new_agent_credentials(not_after=not_after))
    log_type = new_log_type()
    time.sleep(max((not_after - datetime.now(UTC)).total_seconds(), 0.0) + 1.0)

    by_certificate = client.send_with_certificate(
        workspace.workspace_id, log_type, credentials=agent.credentials
    )
    by_assertion = client.send_with_assertion(workspace.workspace_id, log_type, agent=agent)

    assert_refused(by_certificate, 403, "InvalidAuthorization")
    assert_refused(by_assertion, 403, "InvalidAuthorization")
    assert client.raw_blobs(workspace.workspace_id, log_type) == []


def test_given_a_certificate_registered_to_workspace_a_when_sending_to_b_then_403_and_nothing_in_b(
    client: Client, workspace: Workspace
) -> None:
    agent = client.enrolled(workspace)
    other = client.new_workspace()
    log_type = new_log_type()

    by_certificate = client.send_with_certificate(other.workspace_id, log_type, credentials=agent.credentials)
    by_assertion = client.send_with_assertion(other.workspace_id, log_type, agent=agent)

    assert_refused(by_certificate, 403, "InvalidAuthorization")
    assert_refused(by_assertion, 403, "InvalidAuthorization")
    assert container_blob_names(client.storage, other.workspace_id) == []


def test_given_a_forged_forwarded_certificate_header_without_a_tls_certificate_then_403(
    client: Client, workspace: Workspace
) -> None:
    agent = client.enrolled(workspace)
    log_type = new_log_type()

    response = client.send_with_certificate(
        workspace.workspace_id,
        log_type,
        credentials=None,
        extra_headers={"X-ARR-ClientCert": agent.credentials.certificate_der_b64},
    )

    assert_refused(response, 403, "InvalidAuthorization")
    assert client.raw_blobs(workspace.workspace_id, log_type) == []


def test_given_a_forged_header_beside_a_tls_certificate_then_the_tls_certificate_is_what_the_app_sees(
    client: Client, workspace: Workspace
) -> None:
    agent = client.enrolled(workspace)
    log_type = new_log_type()

    response = client.send_with_certificate(
        workspace.workspace_id,
        log_type,
        credentials=agent.credentials,
        extra_headers={"x-arr-clientcert": "forged"},
    )

    assert response.status == 200, response.body
    assert client.blob_agent_ids(workspace.workspace_id, log_type) == [agent.agent_id]


def test_given_a_certificate_registered_nowhere_then_the_handshake_refuses_it_and_nothing_is_stored(
    client: Client, workspace: Workspace
) -> None:
    log_type = new_log_type()

    # The local host's one difference from App Service, which would forward it and let the app say 403.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client.send_with_certificate(
            workspace.workspace_id, log_type, credentials=new_agent_credentials("unregistered")
        )

    assert client.raw_blobs(workspace.workspace_id, log_type) == []
    eventually(
        lambda: any("CERTIFICATE_VERIFY_FAILED" in r["message"] for r in client.host.log_records()) or None,
        timeout=REQUEST_TIMEOUT_SECONDS,
        what="the host logs why the handshake failed",
    )


def _pem_with_private_key() -> str:
    credentials = new_agent_credentials()
    return credentials.certificate_pem + credentials.key_pem


@pytest.mark.parametrize(
    ("certificate_pem", "key", "status", "code"),
    [
        pytest.param(None, "d3Jvbmcga2V5", 403, "InvalidAuthorization", id="wrong-enrollment-key"),
        pytest.param(
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            None,
            400,
            "InvalidCertificate",
            id="malformed-pem",
        ),
        pytest.param(_pem_with_private_key(), None, 400, "InvalidCertificate", id="private-key-in-pem"),
    ],
)
def test_given_an_enrollment_that_is_refused_then_its_status_and_code_and_no_agent(
    client: Client, workspace: Workspace, certificate_pem: str | None, key: str | None, status: int, code: str
) -> None:
    agents_before = client.agent_count(workspace.workspace_id)

    response = client.enroll(workspace, certificate_pem or new_agent_credentials().certificate_pem, key=key)

    assert_refused(response, status, code)
    assert client.agent_count(workspace.workspace_id) == agents_before
