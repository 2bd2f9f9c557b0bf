"""The Logs Ingestion core with in-memory ports: a valid bearer token for a granted principal stores
the array as one raw blob; every refusal carries Azure's status and code, in Azure's error shape,
and leaves nothing behind."""

from __future__ import annotations

import base64
import gzip
import json
import os
import stat
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt import PyJWKClientConnectionError, PyJWKClientError

from shared.dcrs import RuleDirectory, create_rule, is_immutable_id, log_type_of_stream
from shared.devissuer import DevelopmentIssuer
from shared.errors import (
    BadRequest,
    ConfigurationError,
    ContentLengthLimitExceeded,
    DataCollectionRuleNotFound,
    InactiveCustomer,
    InvalidApiVersion,
    InvalidAudience,
    InvalidDataFormat,
    InvalidStream,
    InvalidToken,
    MissingApiVersion,
    OperationFailed,
    SluiceError,
    StorageUnavailable,
    TokenExpired,
    TokenKeysUnavailable,
    UnsupportedContentType,
    WorkspaceNotFound,
    http_status,
)
from shared.http import (
    error_response,
    ingest_request,
    logs_ingestion_error_response,
    unexpected_error_response,
)
from shared.ingest import Accepted, RawWriter
from shared.logs_ingestion import MAX_LOGS_BODY_BYTES, LogsIngest
from shared.rawstore import gunzip_bounded
from shared.tokens import LocalJwks, RemoteJwks, TokenValidator, parse_principal, signing_keys
from shared.workspaces import WorkspaceState, create_workspace
from tests.support.tokens import (
    ISSUER,
    KID,
    claims,
    hs256_with_public_key,
    issuer_key,
    jwk_dict,
    public_jwk,
    sign,
    unsigned,
)
from tests.unit.fakes import MemoryRawStore, MemoryRegistry, MemorySecrets
from tests.unit.fakes_dcr import MemoryDcrRegistry, StaticKeys

STREAM = "Custom-MyTable_CL"
GRANTED = "5f2b2c39-1f7d-4a46-9a70-8f7e4e5c9a11"
OTHER = "0c8d6f3e-6f0e-4c4e-8f43-2b7a3d9e1c22"
RECORDS = [{"Computer": "web-1", "Message": "hello"}, {"Computer": "web-2", "Message": "world"}]
BODY = orjson.dumps(RECORDS)


class Stack:
    def __init__(self, *, tokens: bool = True) -> None:
        self.store = MemoryRawStore()
        self.registry = MemoryRegistry()
        created = create_workspace(registry=self.registry, secrets=MemorySecrets(), containers=self.store)
        self.workspace_id = created.workspace.workspace_id
        self.rules = MemoryDcrRegistry()
        self.rule = create_rule(
            rules=self.rules,
            workspaces=self.registry,
            workspace_id=self.workspace_id,
            streams=[STREAM, "Custom-Other_CL"],
            principals=[GRANTED],
        )
        self.keys = StaticKeys({KID: public_jwk(issuer_key())})
        self.ingest = LogsIngest(
            tokens=TokenValidator(issuer=ISSUER, keys=self.keys) if tokens else None,
            rules=self.rules,
            workspaces=self.registry,
            writer=RawWriter(self.store),
            clock=lambda: datetime.now(UTC),
        )

    def send(
        self,
        body: bytes = BODY,
        *,
        token: str | None = None,
        authorization: str | None = None,
        immutable_id: str | None = None,
        stream: str = STREAM,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Accepted:
        """A request as LogsIngestionClient sends it, through the same HttpRequest the host builds."""
        bearer = f"Bearer {token or sign(claims(GRANTED))}"
        request = func.HttpRequest(
            method="POST",
            url=f"https://127.0.0.1/dataCollectionRules/{immutable_id}/streams/{stream}",
            params={"api-version": "2023-01-01"} if params is None else params,
            headers={
                "Authorization": bearer if authorization is None else authorization,
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                **(headers or {}),
            },
            body=body,
        )
        return self.ingest.ingest(
            ingest_request(request), immutable_id=immutable_id or self.rule.immutable_id, stream=stream
        )

    def refused(self, expected: type[SluiceError], *, code: str, status: int, **kwargs: Any) -> SluiceError:
        with pytest.raises(SluiceError) as info:
            self.send(**kwargs)
        assert type(info.value) is expected, info.value
        assert (info.value.code, http_status(info.value)) == (code, status)
        assert self.store.blobs == {}, "a refused request leaves nothing behind"
        return info.value


@pytest.fixture
def stack() -> Stack:
    return Stack()


# -- accepted ----------------------------------------------------------------------------------------


def test_given_a_granted_principal_when_sending_gzip_then_one_blob_as_sent_with_dcr_metadata(
    stack: Stack,
) -> None:
    sent = gzip.compress(BODY)

    accepted = stack.send(sent, headers={"Content-Encoding": "gzip"})

    (blob,) = stack.store.blobs.values()
    assert accepted.workspace_id == stack.workspace_id
    assert accepted.record_count == 2
    assert "/MyTable_CL/" in accepted.blob_name
    assert blob.data == sent, "a gzip body is stored as sent"
    assert gunzip_bounded(blob.data) == BODY
    assert {k: blob.metadata[k] for k in ("dcr_id", "stream", "principal", "log_type", "record_count")} == {
        "dcr_id": stack.rule.immutable_id,
        "stream": STREAM,
        "principal": GRANTED,
        "log_type": "MyTable_CL",
        "record_count": "2",
    }


@pytest.mark.parametrize("audience", ["https://monitor.azure.com", "https://monitor.azure.com/"])
def test_given_either_monitor_audience_then_accepted(stack: Stack, audience: str) -> None:
    assert stack.send(token=sign(claims(GRANTED, aud=audience))).record_count == 2


def test_given_a_token_expired_within_the_15_minute_skew_then_accepted(stack: Stack) -> None:
    expired_lately = claims(GRANTED, now=datetime.now(UTC) - timedelta(minutes=70))

    assert stack.send(token=sign(expired_lately)).record_count == 2


@pytest.mark.parametrize("claim", ["appid", "azp"])
def test_given_no_oid_then_the_app_id_claim_is_the_principal(stack: Stack, claim: str) -> None:
    app_id: dict[str, Any] = {claim: GRANTED.upper()}
    token = sign(claims(OTHER, oid=None, **app_id))

    assert stack.send(token=token).record_count == 2


def test_given_oid_and_appid_then_oid_is_the_principal(stack: Stack) -> None:
    token = sign(claims(OTHER, appid=GRANTED))

    stack.refused(OperationFailed, code="OperationFailed", status=403, token=token)


# -- authentication: 401 -----------------------------------------------------------------------------


def test_given_a_signature_by_another_key_with_the_issuers_kid_then_401(stack: Stack) -> None:
    forged = sign(claims(GRANTED), key=issuer_key("attacker"))

    error = stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, token=forged)
    assert "Signature verification failed" in error.message


def test_given_a_tampered_payload_then_401(stack: Stack) -> None:
    header, _, signature = sign(claims(OTHER)).split(".")
    payload = sign(claims(GRANTED)).split(".")[1]

    stack.refused(
        InvalidToken, code="InvalidAuthenticationToken", status=401, token=f"{header}.{payload}.{signature}"
    )


def test_given_another_issuer_then_401(stack: Stack) -> None:
    token = sign(claims(GRANTED, iss="https://login.example/other-tenant/v2.0"))

    error = stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, token=token)
    assert "issuer" in error.message.lower()


@pytest.mark.parametrize("audience", ["https://management.azure.com", "https://monitor.azure.com//", None])
def test_given_another_audience_then_401_invalid_audience(stack: Stack, audience: str | None) -> None:
    token = sign(claims(GRANTED, aud=audience))

    if audience is None:  # a missing aud is a malformed token, not a wrong one
        stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, token=token)
    else:
        stack.refused(InvalidAudience, code="InvalidAudience", status=401, token=token)


def test_given_a_token_expired_beyond_the_skew_then_401_token_expired(stack: Stack) -> None:
    token = sign(claims(GRANTED, now=datetime.now(UTC) - timedelta(minutes=80)))

    stack.refused(TokenExpired, code="TokenExpired", status=401, token=token)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_given_a_token_valid_only_from_20_minutes_on_then_401(stack: Stack, claim: str) -> None:
    not_yet: dict[str, Any] = {claim: datetime.now(UTC) + timedelta(minutes=20)}
    token = sign(claims(GRANTED, **not_yet))

    stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, token=token)


@pytest.mark.parametrize("missing", ["exp", "iat"])
def test_given_a_token_without_a_required_time_claim_then_401(stack: Stack, missing: str) -> None:
    left_out: dict[str, Any] = {missing: None}
    token = sign(claims(GRANTED, **left_out))

    stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, token=token)


def test_given_alg_none_then_401(stack: Stack) -> None:
    stack.refused(
        InvalidToken, code="InvalidAuthenticationToken", status=401, token=unsigned(claims(GRANTED))
    )


def test_given_an_alg_of_another_key_family_on_the_issuers_kid_then_401_not_500(stack: Stack) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims(GRANTED), ec_key, algorithm="ES256", headers={"kid": KID})

    stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, token=token)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    header=st.one_of(
        json_values,
        st.fixed_dictionaries({"alg": json_values, "kid": json_values}),
        st.fixed_dictionaries({"alg": json_values | st.just("RS256"), "kid": st.just(KID)}),
    ),
    payload=json_values,
    signature=st.binary(max_size=300),
)
def test_given_any_unsigned_token_shape_then_always_a_refusal_never_a_crash(
    header: Any, payload: Any, signature: bytes
) -> None:
    validator = TokenValidator(issuer=ISSUER, keys=StaticKeys({KID: public_jwk(issuer_key())}))
    token = (
        ".".join(_b64url(json.dumps(part).encode()) for part in (header, payload)) + "." + _b64url(signature)
    )

    with pytest.raises(InvalidToken):
        validator.principal(f"Bearer {token}")


@settings(max_examples=200, deadline=None)
@given(authorization=st.text(max_size=200))
def test_given_any_authorization_text_then_always_a_refusal_never_a_crash(authorization: str) -> None:
    validator = TokenValidator(issuer=ISSUER, keys=StaticKeys({KID: public_jwk(issuer_key())}))

    with pytest.raises(InvalidToken):
        validator.principal(authorization)


def test_given_hs256_keyed_with_the_public_key_then_401(stack: Stack) -> None:
    forged = hs256_with_public_key(claims(GRANTED), key=issuer_key())

    stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, token=forged)


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "SharedKey ws:sig", "Bearer a.b.c"],
)
def test_given_no_usable_bearer_token_then_401(stack: Stack, authorization: str) -> None:
    stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, authorization=authorization)


@pytest.mark.parametrize("kid", ["unknown-kid", None])
def test_given_a_kid_the_jwks_does_not_hold_then_401(stack: Stack, kid: str | None) -> None:
    stack.refused(
        InvalidToken, code="InvalidAuthenticationToken", status=401, token=sign(claims(GRANTED), kid=kid)
    )


@pytest.mark.parametrize("principal", [None, "not-a-guid"])
def test_given_no_principal_guid_then_401(stack: Stack, principal: str | None) -> None:
    token = sign(claims(GRANTED, oid=principal))

    stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401, token=token)


def test_given_no_issuer_configured_then_every_token_is_refused_401_saying_so() -> None:
    stack = Stack(tokens=False)

    error = stack.refused(InvalidToken, code="InvalidAuthenticationToken", status=401)
    assert "no token issuer is configured" in error.message


# -- authorization: 403 ------------------------------------------------------------------------------


def test_given_a_principal_not_granted_on_the_rule_then_403_operation_failed(stack: Stack) -> None:
    error = stack.refused(OperationFailed, code="OperationFailed", status=403, token=sign(claims(OTHER)))

    assert stack.rule.immutable_id in error.message


def test_given_an_unknown_rule_then_the_same_403_as_not_granted(stack: Stack) -> None:
    unknown = "dcr-" + uuid.uuid4().hex

    not_granted = stack.refused(
        OperationFailed, code="OperationFailed", status=403, token=sign(claims(OTHER))
    )
    no_rule = stack.refused(OperationFailed, code="OperationFailed", status=403, immutable_id=unknown)

    assert no_rule.message.replace(unknown, "ID") == not_granted.message.replace(
        stack.rule.immutable_id, "ID"
    )


@pytest.mark.parametrize("immutable_id", ["dcr-xyz", "../../ws-x", "DCR-" + "A" * 32, "dcr-" + "0" * 33])
def test_given_a_malformed_rule_id_then_403_without_echoing_it(stack: Stack, immutable_id: str) -> None:
    error = stack.refused(OperationFailed, code="OperationFailed", status=403, immutable_id=immutable_id)

    assert immutable_id not in error.message
    assert stack.rules.reads == 0, "a malformed id never reaches the table"


def test_given_a_stream_the_rule_does_not_have_then_403(stack: Stack) -> None:
    error = stack.refused(OperationFailed, code="OperationFailed", status=403, stream="Custom-NotMine_CL")

    assert "Custom-NotMine_CL" in error.message


def test_given_a_rule_whose_workspace_is_gone_then_the_same_403(stack: Stack) -> None:
    del stack.registry.workspaces[stack.workspace_id]

    stack.refused(OperationFailed, code="OperationFailed", status=403)


@pytest.mark.parametrize("state", [WorkspaceState.DISABLED, WorkspaceState.DELETED])
def test_given_an_inactive_workspace_then_403_inactive_customer(stack: Stack, state: WorkspaceState) -> None:
    workspace = stack.registry.workspaces[stack.workspace_id]
    stack.registry.workspaces[stack.workspace_id] = replace(workspace, state=state)

    stack.refused(InactiveCustomer, code="InactiveCustomer", status=403)


# -- request shape: 400 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [
        "MyTable_CL",
        "Custom-MyTable",
        "Custom-_CL",
        "Custom-My-Table_CL",
        "Custom-../../x_CL",
        "Custom-a/b_CL",
        "Custom-Tåble_CL",
        "Custom-" + "A" * 98 + "_CL",
        "Microsoft-Syslog",
    ],
)
def test_given_a_stream_that_is_not_a_custom_table_then_400_before_any_token_check(
    stack: Stack, stream: str
) -> None:
    stack.refused(InvalidStream, code="InvalidStream", status=400, stream=stream, authorization="")


def test_given_a_custom_table_stream_then_its_log_type_is_the_table() -> None:
    assert log_type_of_stream("Custom-MyTable_CL") == "MyTable_CL"
    assert log_type_of_stream("Custom-" + "A" * 97 + "_CL") == "A" * 97 + "_CL"


@pytest.mark.parametrize(
    ("params", "expected", "code"),
    [
        ({}, MissingApiVersion, "MissingApiVersion"),
        ({"api-version": "2021-11-01-preview"}, InvalidApiVersion, "InvalidApiVersion"),
    ],
)
def test_given_no_or_another_api_version_then_400(
    stack: Stack, params: dict[str, str], expected: type[SluiceError], code: str
) -> None:
    stack.refused(expected, code=code, status=400, params=params)


@pytest.mark.parametrize(
    "body",
    [
        b'{"Computer": "web-1"}',
        b"[]",
        b"[1, 2]",
        b'[{"a": 1}, "b"]',
        b"[{",
        b"",
        b'[{"Message": "\xff\xfe"}]',
        b"\xef\xbb\xbf[{}]",
    ],
    ids=["object", "empty", "numbers", "mixed", "truncated", "nothing", "invalid-utf8", "bom"],
)
def test_given_a_body_that_is_not_an_array_of_objects_then_400_invalid_data_format(
    stack: Stack, body: bytes
) -> None:
    stack.refused(InvalidDataFormat, code="InvalidDataFormat", status=400, body=body)


def test_given_a_corrupt_gzip_body_then_400(stack: Stack) -> None:
    truncated = gzip.compress(BODY)[:-6]

    stack.refused(
        InvalidDataFormat,
        code="InvalidDataFormat",
        status=400,
        body=truncated,
        headers={"Content-Encoding": "gzip"},
    )


def test_given_an_unknown_content_encoding_then_400(stack: Stack) -> None:
    stack.refused(
        UnsupportedContentType, code="UnsupportedContentType", status=400, headers={"Content-Encoding": "br"}
    )


# -- size: 413 ---------------------------------------------------------------------------------------


def array_of_size(size: int) -> bytes:
    """A JSON array of one object, exactly `size` bytes."""
    frame = len(b'[{"Message":""}]')
    return b'[{"Message":"' + b"x" * (size - frame) + b'"}]'


def test_given_exactly_1_mb_then_accepted(stack: Stack) -> None:
    assert stack.send(array_of_size(MAX_LOGS_BODY_BYTES)).record_count == 1


def test_given_a_body_over_1_mb_then_413_content_length_limit_exceeded(stack: Stack) -> None:
    body = array_of_size(MAX_LOGS_BODY_BYTES + 1)

    error = stack.refused(
        ContentLengthLimitExceeded, code="ContentLengthLimitExceeded", status=413, body=body, authorization=""
    )
    assert error.message == (
        "Maximum allowed content length: 1048576 bytes (1 MB). Provided content length: 1048577 bytes."
    )


def test_given_a_declared_length_over_1_mb_then_413(stack: Stack) -> None:
    stack.refused(
        ContentLengthLimitExceeded,
        code="ContentLengthLimitExceeded",
        status=413,
        headers={"Content-Length": str(MAX_LOGS_BODY_BYTES + 1)},
    )


def test_given_gzip_that_inflates_past_1_mb_then_413(stack: Stack) -> None:
    bomb = gzip.compress(array_of_size(MAX_LOGS_BODY_BYTES + 1))
    assert len(bomb) < 4096

    stack.refused(
        ContentLengthLimitExceeded,
        code="ContentLengthLimitExceeded",
        status=413,
        body=bomb,
        headers={"Content-Encoding": "gzip"},
    )


def test_given_gzip_of_exactly_1_mb_then_accepted(stack: Stack) -> None:
    body = gzip.compress(array_of_size(MAX_LOGS_BODY_BYTES))

    assert stack.send(body, headers={"Content-Encoding": "gzip"}).record_count == 1


# -- error shape -------------------------------------------------------------------------------------


def test_given_a_refusal_then_the_azure_core_error_shape_with_x_ms_error_code() -> None:
    response = logs_ingestion_error_response(OperationFailed("no access"))

    assert response.status_code == 403
    assert json.loads(response.get_body()) == {"error": {"code": "OperationFailed", "message": "no access"}}
    assert response.headers["x-ms-error-code"] == "OperationFailed"
    assert response.mimetype == "application/json"


def test_given_a_401_then_it_names_the_bearer_scheme() -> None:
    response = logs_ingestion_error_response(TokenExpired("old"))

    assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert json.loads(response.get_body())["error"]["code"] == "TokenExpired"


def test_given_an_unavailable_dependency_then_503_with_retry_after() -> None:
    response = logs_ingestion_error_response(StorageUnavailable("down"))

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0


def test_given_a_bug_then_500_in_the_routes_shape() -> None:
    logs = unexpected_error_response(RuntimeError("boom"), logs_ingestion_error_response)
    collector = unexpected_error_response(RuntimeError("boom"))

    assert json.loads(logs.get_body()) == {
        "error": {"code": "InternalServerError", "message": "An internal error occurred."}
    }
    assert json.loads(collector.get_body()) == {
        "Error": "InternalServerError",
        "Message": "An internal error occurred.",
    }
    assert logs.status_code == collector.status_code == 500


def test_given_the_data_collector_route_then_its_shape_is_unchanged() -> None:
    response = error_response(OperationFailed("no access"))

    assert json.loads(response.get_body()) == {"Error": "OperationFailed", "Message": "no access"}


# -- rules -------------------------------------------------------------------------------------------


def test_given_a_new_rule_then_its_id_is_azure_shaped_and_principals_canonical() -> None:
    stack = Stack()
    rule = create_rule(
        rules=stack.rules,
        workspaces=stack.registry,
        workspace_id=stack.workspace_id,
        streams=[STREAM, STREAM],
        principals=[GRANTED.upper(), GRANTED],
    )

    assert is_immutable_id(rule.immutable_id)
    assert (rule.streams, rule.principals) == ((STREAM,), (GRANTED,))


@pytest.mark.parametrize(
    ("streams", "principals", "expected"),
    [
        ([STREAM], ["app-1"], BadRequest),
        ([STREAM], [], BadRequest),
        ([], [GRANTED], BadRequest),
        (["Custom-Bad Name_CL"], [GRANTED], InvalidStream),
    ],
)
def test_given_an_invalid_rule_then_nothing_is_registered(
    streams: list[str], principals: list[str], expected: type[SluiceError]
) -> None:
    stack = Stack()
    before = dict(stack.rules.rules)

    with pytest.raises(expected):
        create_rule(
            rules=stack.rules,
            workspaces=stack.registry,
            workspace_id=stack.workspace_id,
            streams=streams,
            principals=principals,
        )
    assert stack.rules.rules == before


def test_given_an_unknown_workspace_then_no_rule() -> None:
    stack = Stack()

    with pytest.raises(WorkspaceNotFound):
        create_rule(
            rules=stack.rules,
            workspaces=stack.registry,
            workspace_id=str(uuid.uuid4()),
            streams=[STREAM],
            principals=[GRANTED],
        )


def test_given_repeated_lookups_then_the_directory_reads_once_per_id_even_unknown() -> None:
    stack = Stack()
    directory = RuleDirectory(rules=stack.rules, cache_ttl_seconds=60)
    unknown = "dcr-" + uuid.uuid4().hex

    for _ in range(3):
        assert directory.get_rule(stack.rule.immutable_id) == stack.rule
        with pytest.raises(DataCollectionRuleNotFound):
            directory.get_rule(unknown)

    assert stack.rules.reads == 2


# -- signing keys ------------------------------------------------------------------------------------


def test_given_a_jwks_setting_then_https_is_fetched_a_path_is_a_file_and_other_schemes_refused(
    tmp_path: Path,
) -> None:
    assert isinstance(signing_keys("https://login.example/keys"), RemoteJwks)
    assert isinstance(signing_keys(str(tmp_path / "jwks.json")), LocalJwks)
    for uri in ("http://login.example/keys", "file:///etc/jwks.json"):
        with pytest.raises(ConfigurationError, match="SLUICE_TOKEN_JWKS_URI"):
            signing_keys(uri)


class FailingClient:
    def __init__(self, error: Exception, *, on_list: bool) -> None:
        self.error = error
        self.on_list = on_list

    def get_signing_keys(self) -> list[Any]:
        if self.on_list:
            raise self.error
        return []

    def get_signing_key(self, kid: str) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "on_list", "expected"),
    [
        (PyJWKClientConnectionError("down"), True, TokenKeysUnavailable),
        (PyJWKClientError("not a JSON object"), True, TokenKeysUnavailable),
        (PyJWKClientConnectionError("down on refresh"), False, TokenKeysUnavailable),
        (PyJWKClientError("Unable to find a signing key"), False, InvalidToken),
    ],
)
def test_given_the_issuers_jwks_fails_then_503_but_an_unknown_kid_is_401(
    monkeypatch: pytest.MonkeyPatch, error: Exception, on_list: bool, expected: type[SluiceError]
) -> None:
    keys = RemoteJwks("https://login.example/keys")
    monkeypatch.setattr(keys, "_client", FailingClient(error, on_list=on_list))

    with pytest.raises(SluiceError) as info:
        keys.signing_key("kid")
    assert type(info.value) is expected
    assert http_status(info.value) == (503 if expected is TokenKeysUnavailable else 401)


def write_jwks(path: Path, *jwks: dict[str, Any], version: int) -> None:
    """A JWKS file whose modification time is `version` seconds: the reread is keyed on the file's stat,
    and two writes within a coarse file-system tick could otherwise look alike."""
    path.write_text(json.dumps({"keys": list(jwks)}), encoding="utf-8")
    os.utime(path, (version, version))


def test_given_the_jwks_file_changes_then_the_new_key_is_used_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    keys = LocalJwks(path)
    validator = TokenValidator(issuer=ISSUER, keys=keys)
    with pytest.raises(InvalidToken):
        validator.principal(f"Bearer {sign(claims(GRANTED))}")  # no file yet: nothing verifies

    write_jwks(path, jwk_dict(issuer_key()), version=1)
    assert validator.principal(f"Bearer {sign(claims(GRANTED))}") == GRANTED

    write_jwks(path, jwk_dict(issuer_key("rotated"), "kid-2"), version=2)
    assert validator.principal(f"Bearer {sign(claims(GRANTED), key=issuer_key('rotated'), kid='kid-2')}")
    with pytest.raises(InvalidToken):
        validator.principal(f"Bearer {sign(claims(GRANTED))}")


@pytest.mark.parametrize("content", ["not json", "[]", '{"keys": []}', '{"keys": [{"kty": "nope"}]}'])
def test_given_an_unreadable_jwks_file_then_503(tmp_path: Path, content: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(TokenKeysUnavailable):
        LocalJwks(path).signing_key(KID)


def test_given_the_development_issuer_then_owner_only_files_and_tokens_the_service_accepts(
    tmp_path: Path,
) -> None:
    jwks_file = tmp_path / "state" / "dev-issuer" / "jwks.json"
    issuer = DevelopmentIssuer(issuer="https://sluice.local/dev-issuer", jwks_file=jwks_file)
    now = datetime.now(UTC)

    token = issuer.token(GRANTED, lifetime=timedelta(minutes=5), now=now)
    again = DevelopmentIssuer(issuer=issuer.issuer, jwks_file=jwks_file).token(
        OTHER, lifetime=timedelta(minutes=5), now=now
    )

    assert stat.S_IMODE(jwks_file.parent.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in jwks_file.parent.iterdir()} == {
        "jwks.json": 0o600,
        "key.pem": 0o600,
    }
    assert "PRIVATE" not in jwks_file.read_text(encoding="utf-8")
    validator = TokenValidator(issuer=issuer.issuer, keys=LocalJwks(jwks_file))
    assert validator.principal(f"Bearer {token}") == GRANTED
    assert validator.principal(f"Bearer {again}") == OTHER, "the second use signs with the same key"


def test_given_principal_spellings_then_one_canonical_guid() -> None:
    assert parse_principal(GRANTED.upper()) == GRANTED
    assert parse_principal("{" + GRANTED + "}") == GRANTED
    assert parse_principal("app-1") is None
