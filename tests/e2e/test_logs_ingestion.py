"""The Logs Ingestion API end to end through the local host: the unmodified
`azure.monitor.ingestion.LogsIngestionClient`, authenticated by a token of the development issuer
(`sluice dev-token`), sends to a rule made with `sluice dcr create`, and the records reach the SQL
aggregates; every hostile request gets its exact status and code in Azure's error shape and leaves
no blob. One host serves the module; each test has its own workspace, so tests do not see each
other's data."""

from __future__ import annotations

import gzip
import http.client
import json
import ssl
import subprocess
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.monitor.ingestion import LogsIngestionClient
from azure.storage.blob import BlobServiceClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.azurite import REPO_ROOT, AzuritePorts
from tests.e2e.support import (
    REQUEST_TIMEOUT_SECONDS,
    SLUICE_COMMAND,
    LocalHost,
    eventually,
    host_environment,
)
from tests.support.storage import blob_service, container_blob_names
from tests.support.tokens import claims, hs256_with_public_key, issuer_key, sign, unsigned

pytestmark = pytest.mark.e2e

DEV_ISSUER = "https://sluice.local/dev-issuer"
API_VERSION = "?api-version=2023-01-01"
PROCESSED_TIMEOUT_SECONDS = 10.0
ONE_MB = 1024 * 1024


class DevToken:
    """A TokenCredential handing out a token of `sluice dev-token`, as azure-identity's credentials
    hand out Entra's: the client asks it for a token for Azure Monitor's scope."""

    def __init__(self, token: str, *, minutes: int) -> None:
        self._token = AccessToken(token, int((datetime.now(UTC) + timedelta(minutes=minutes)).timestamp()))
        self.scopes: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        return self._token


@dataclass(frozen=True)
class WireResponse:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Rule:
    workspace_id: str
    immutable_id: str
    stream: str
    principal: str

    @property
    def log_type(self) -> str:
        return self.stream.removeprefix("Custom-")

    @property
    def path(self) -> str:
        return f"/dataCollectionRules/{self.immutable_id}/streams/{self.stream}{API_VERSION}"


class Operator:
    """Both sides of the wire: the `sluice` command as an operator runs it, HTTPS checked against the
    host's CA, and storage read with the SDK directly (independently of the code under test)."""

    def __init__(self, host: LocalHost, jwks_file: Path) -> None:
        self.host = host
        self.jwks_file = jwks_file
        self.storage: BlobServiceClient = blob_service(host.env["SLUICE_STORAGE"])

    @property
    def ca_file(self) -> str:
        return self.host.demo()["ca_file"]

    def sluice(self, *args: str) -> str:
        result = subprocess.run(
            [str(SLUICE_COMMAND), *args],
            cwd=REPO_ROOT,
            env=self.host.env,
            capture_output=True,
            timeout=REQUEST_TIMEOUT_SECONDS * 3,
        )
        assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
        return result.stdout.decode("utf-8")

    def new_rule(self, *, principal: str | None = None) -> Rule:
        """A new workspace and a rule sending its own custom table there, granted to `principal`."""
        workspace_id = json.loads(self.sluice("workspace", "create", "--json"))["workspace_id"]
        principal = principal or str(uuid.uuid4())
        stream = f"Custom-Logs{uuid.uuid4().hex[:10]}_CL"
        created = json.loads(
            self.sluice(
                "dcr",
                "create",
                "--workspace",
                workspace_id,
                "--principal",
                principal,
                "--stream",
                stream,
                "--json",
            )
        )
        assert created["stream"] == stream
        return Rule(workspace_id, created["immutable_id"], stream, principal)

    def dev_token(self, principal: str) -> str:
        return self.sluice("dev-token", "--principal", principal, "--minutes", "30").strip()

    def usage(self, workspace_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self.sluice("usage", "--workspace", workspace_id, "--json"))
        return rows

    def blobs(self, workspace_id: str) -> list[str]:
        return container_blob_names(self.storage, workspace_id)

    def client(self, credential: DevToken) -> LogsIngestionClient:
        return LogsIngestionClient(
            endpoint=self.host.endpoint, credential=credential, connection_verify=self.ca_file
        )

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> WireResponse:
        context = ssl.create_default_context(cafile=self.ca_file)
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.host.port, context=context, timeout=REQUEST_TIMEOUT_SECONDS
        )
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return WireResponse(
                response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
            )
        finally:
            connection.close()

    def issuer_key(self) -> tuple[rsa.RSAPrivateKey, str]:
        """The development issuer's key and kid, read from its files as any local process could."""
        key = serialization.load_pem_private_key(self.jwks_file.with_name("key.pem").read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        (jwk,) = json.loads(self.jwks_file.read_text(encoding="utf-8"))["keys"]
        return key, str(jwk["kid"])


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    tmp_path = tmp_path_factory.mktemp("logs-ingestion")
    state_dir = tmp_path / "state"
    jwks_file = state_dir / "dev-issuer" / "jwks.json"
    env = {
        **host_environment(tmp_path, AzuritePorts.free()),
        "SLUICE_TOKEN_ISSUER": DEV_ISSUER,
        "SLUICE_TOKEN_JWKS_URI": str(jwks_file),
    }
    host = LocalHost(state_dir=state_dir, logs=tmp_path / "logs", env=env)
    try:
        yield Operator(host.start(), jwks_file)
    finally:
        host.kill()


def test_given_a_dev_token_when_the_unmodified_sdk_uploads_then_204_and_the_records_are_aggregated(
    operator: Operator,
) -> None:
    rule = operator.new_rule()
    credential = DevToken(operator.dev_token(rule.principal), minutes=30)
    logs: list[MutableMapping[str, Any]] = [
        {"TimeGenerated": datetime.now(UTC).isoformat(), "Computer": "web-1", "Message": "started"},
        {"TimeGenerated": datetime.now(UTC).isoformat(), "Computer": "web-1", "Message": "ready"},
        {"TimeGenerated": datetime.now(UTC).isoformat(), "Computer": "web-2", "Message": "hello"},
    ]

    with operator.client(credential) as client:
        client.upload(rule_id=rule.immutable_id, stream_name=rule.stream, logs=logs)

    assert set(credential.scopes) == {("https://monitor.azure.com/.default",)}
    rows = eventually(
        lambda: operator.usage(rule.workspace_id) or None,
        timeout=PROCESSED_TIMEOUT_SECONDS,
        what="usage rows of the upload appear",
    )
    assert sorted((r["log_type"], r["computer"], r["records"]) for r in rows) == [
        (rule.log_type, "web-1", 2),
        (rule.log_type, "web-2", 1),
    ]
    (blob,) = operator.blobs(rule.workspace_id)
    metadata = (
        operator.storage.get_blob_client(f"ws-{rule.workspace_id}", blob).get_blob_properties().metadata
    )
    assert (metadata["dcr_id"], metadata["stream"], metadata["principal"]) == (
        rule.immutable_id,
        rule.stream,
        rule.principal,
    )


def test_given_a_token_for_another_principal_when_uploading_then_403_and_nothing_is_written(
    operator: Operator,
) -> None:
    rule = operator.new_rule()
    intruder = DevToken(operator.dev_token(str(uuid.uuid4())), minutes=30)

    with operator.client(intruder) as client, pytest.raises(HttpResponseError) as info:
        client.upload(rule_id=rule.immutable_id, stream_name=rule.stream, logs=[{"Message": "x"}])

    assert info.value.status_code == 403
    assert info.value.error is not None and info.value.error.code == "OperationFailed"
    assert operator.blobs(rule.workspace_id) == []


def test_given_the_rules_listed_then_the_new_rule_is_there(operator: Operator) -> None:
    rule = operator.new_rule()

    (listed,) = json.loads(operator.sluice("dcr", "list", "--workspace", rule.workspace_id, "--json"))

    assert (listed["immutable_id"], listed["streams"], listed["principals"]) == (
        rule.immutable_id,
        [rule.stream],
        [rule.principal],
    )


# -- hostile requests: exact status and code, Azure's error shape, no blob -----------------------------


@dataclass(frozen=True)
class Hostile:
    status: int
    code: str
    body: bytes = b'[{"Computer": "evil", "Message": "x"}]'
    token: str | None = None  # None: a valid token of the rule's principal
    headers: dict[str, str] | None = None
    path: str | None = None  # None: the rule's path


def hostile_requests(operator: Operator, rule: Rule) -> dict[str, Hostile]:
    key, kid = operator.issuer_key()
    valid = claims(rule.principal, issuer=DEV_ISSUER, oid=None, appid=rule.principal)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    other_rule = f"/dataCollectionRules/dcr-{uuid.uuid4().hex}/streams/{rule.stream}{API_VERSION}"

    def stream_path(stream: str) -> str:
        return f"/dataCollectionRules/{rule.immutable_id}/streams/{stream}{API_VERSION}"

    return {
        "malformed-jwt": Hostile(401, "InvalidAuthenticationToken", token="eyJhbGciOi.not-a.jwt"),
        "no-authorization": Hostile(401, "InvalidAuthenticationToken", headers={"Authorization": ""}),
        "alg-none": Hostile(401, "InvalidAuthenticationToken", token=unsigned(valid, kid=kid)),
        "hs256-public-key": Hostile(
            401, "InvalidAuthenticationToken", token=hs256_with_public_key(valid, key=key, kid=kid)
        ),
        "other-key-same-kid": Hostile(
            401, "InvalidAuthenticationToken", token=sign(valid, key=issuer_key("attacker"), kid=kid)
        ),
        "expired": Hostile(
            401,
            "TokenExpired",
            token=sign({**valid, "iat": hour_ago, "nbf": hour_ago, "exp": hour_ago}, key=key, kid=kid),
        ),
        "wrong-audience": Hostile(
            401,
            "InvalidAudience",
            token=sign({**valid, "aud": "https://management.azure.com"}, key=key, kid=kid),
        ),
        "wrong-issuer": Hostile(
            401,
            "InvalidAuthenticationToken",
            token=sign({**valid, "iss": "https://login.example/tenant/v2.0"}, key=key, kid=kid),
        ),
        "unknown-rule": Hostile(403, "OperationFailed", path=other_rule),
        "rule-id-traversal": Hostile(
            403,
            "OperationFailed",
            path=f"/dataCollectionRules/..%2F..%2Fws-x/streams/{rule.stream}{API_VERSION}",
        ),
        "stream-not-on-rule": Hostile(403, "OperationFailed", path=stream_path("Custom-Elsewhere_CL")),
        "stream-traversal": Hostile(400, "InvalidStream", path=stream_path("Custom-..%2F..%2Fraw%2Fx_CL")),
        "stream-bad-chars": Hostile(400, "InvalidStream", path=stream_path("Custom-My%20Table%3B_CL")),
        "no-api-version": Hostile(
            400, "MissingApiVersion", path=f"/dataCollectionRules/{rule.immutable_id}/streams/{rule.stream}"
        ),
        "oversize": Hostile(413, "ContentLengthLimitExceeded", body=b'[{"M":"' + b"x" * ONE_MB + b'"}]'),
        "gzip-bomb": Hostile(
            413,
            "ContentLengthLimitExceeded",
            body=gzip.compress(b'[{"M":"' + b"x" * (4 * ONE_MB) + b'"}]'),
            headers={"Content-Encoding": "gzip"},
        ),
        "not-an-array": Hostile(400, "InvalidDataFormat", body=b'{"Computer": "evil"}'),
        "array-of-strings": Hostile(400, "InvalidDataFormat", body=b'["evil"]'),
        "invalid-utf8": Hostile(400, "InvalidDataFormat", body=b'[{"Computer": "\xc3\x28"}]'),
        "not-json": Hostile(400, "InvalidDataFormat", body=b"<xml/>"),
    }


HOSTILE_CASES = [
    "malformed-jwt",
    "no-authorization",
    "alg-none",
    "hs256-public-key",
    "other-key-same-kid",
    "expired",
    "wrong-audience",
    "wrong-issuer",
    "unknown-rule",
    "rule-id-traversal",
    "stream-not-on-rule",
    "stream-traversal",
    "stream-bad-chars",
    "no-api-version",
    "oversize",
    "gzip-bomb",
    "not-an-array",
    "array-of-strings",
    "invalid-utf8",
    "not-json",
]


@dataclass(frozen=True)
class Target:
    rule: Rule
    token: str  # valid: the rule's principal, from `sluice dev-token` (which makes the issuer's key)
    hostile: dict[str, Hostile]


@pytest.fixture(scope="module")
def target(operator: Operator) -> Target:
    """The rule every hostile request aims at, in a workspace nothing is ever accepted into."""
    rule = operator.new_rule()
    token = operator.dev_token(rule.principal)
    return Target(rule, token, hostile_requests(operator, rule))


def send(operator: Operator, rule: Rule, token: str, hostile: Hostile) -> WireResponse:
    headers = {"Authorization": f"Bearer {hostile.token or token}", "Content-Type": "application/json"}
    return operator.post(hostile.path or rule.path, hostile.body, {**headers, **(hostile.headers or {})})


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_given_a_hostile_request_then_its_exact_refusal_and_no_blob(
    operator: Operator, target: Target, case: str
) -> None:
    hostile = target.hostile[case]

    response = send(operator, target.rule, target.token, hostile)

    assert response.status == hostile.status, response.body
    error = response.json()["error"]
    assert response.json() == {"error": {"code": hostile.code, "message": error["message"]}}
    assert response.headers["x-ms-error-code"] == hostile.code
    assert operator.blobs(target.rule.workspace_id) == []


def test_given_the_hostile_cases_then_each_is_exercised(target: Target) -> None:
    assert sorted(target.hostile) == sorted(HOSTILE_CASES)


def test_given_the_hostile_requests_without_their_hostile_part_then_accepted(operator: Operator) -> None:
    """The control, on a rule of its own: the request the hostile ones are made from is stored, so each
    refusal above is its hostile part's doing."""
    rule = operator.new_rule()

    response = send(operator, rule, operator.dev_token(rule.principal), Hostile(204, ""))

    assert (response.status, response.body) == (204, b"")
    assert len(operator.blobs(rule.workspace_id)) == 1
