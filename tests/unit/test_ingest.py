"""The Data Collector ingest core with in-memory ports: what is accepted is stored exactly, what is
refused gets Azure's code and leaves nothing behind."""

from __future__ import annotations

import gzip
import hashlib
import re
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from shared import sharedkey
from shared.errors import SluiceError, http_status
from shared.ingest import DataCollectorIngest, IngestRequest, RawWriter
from shared.plans import Plan
from shared.rawstore import MAX_BODY_BYTES, gunzip_bounded
from shared.workspaces import WorkspaceDirectory, WorkspaceState, create_workspace
from tests.unit.fakes import MemoryRawStore, MemoryRegistry, MemorySecrets

NOW = datetime(2026, 11, 22, 13, 37, 5, tzinfo=UTC)
RECORDS = [{"Computer": "web-1", "Message": "hello"}, {"Computer": "web-2", "Message": "world"}]


class CaseInsensitive(dict[str, str]):
    """Header lookup as azure.functions.HttpRequest.headers does it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in values.items()})

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)


class Stack:
    def __init__(self) -> None:
        self.store = MemoryRawStore()
        self.registry = MemoryRegistry()
        self.secrets = MemorySecrets()
        created = create_workspace(
            registry=self.registry,
            secrets=self.secrets,
            containers=self.store,
            plan=Plan.FREE,
            now=lambda: NOW,
        )
        self.workspace_id = created.workspace.workspace_id
        self.key = created.primary_key
        self.secondary_key = created.secondary_key
        self.ingest = DataCollectorIngest(
            directory=WorkspaceDirectory(registry=self.registry, secrets=self.secrets, cache_ttl_seconds=0),
            writer=RawWriter(self.store),
            clock=lambda: NOW,
        )

    def request(
        self,
        body: bytes,
        *,
        key: str | None = None,
        workspace_id: str | None = None,
        date: datetime = NOW,
        params: dict[str, str] | None = None,
        **headers: str,
    ) -> IngestRequest:
        x_ms_date = sharedkey.rfc1123(date)
        content_type = headers.pop("content_type", "application/json")
        values = {
            "Authorization": sharedkey.authorization_header(
                workspace_id or self.workspace_id,
                key or self.key,
                content_length=len(body),
                content_type=content_type,
                x_ms_date=x_ms_date,
            ),
            "Content-Type": content_type,
            "Log-Type": "MyApp",
            "x-ms-date": x_ms_date,
        }
        values.update({k.replace("_", "-"): v for k, v in headers.items()})
        return IngestRequest(
            headers=CaseInsensitive({k: v for k, v in values.items() if v != ""}),
            params={"api-version": "2016-04-01"} if params is None else params,
            body=body,
        )


@pytest.fixture
def stack() -> Stack:
    return Stack()


def test_given_valid_post_when_ingesting_then_blob_holds_body_gzip_with_metadata(stack: Stack) -> None:
    body = orjson.dumps(RECORDS)

    accepted = stack.ingest.ingest(stack.request(body))

    assert re.fullmatch(r"raw/2026/11/22/13/MyApp/[0-9a-f]{32}\.json\.gz", accepted.blob_name)
    blob = stack.store.get_raw(stack.workspace_id, accepted.blob_name)
    assert gzip.decompress(blob.data) == body
    assert blob.metadata == {
        "workspace_id": stack.workspace_id,
        "log_type": "MyApp",
        "record_count": "2",
        "sha256": hashlib.sha256(blob.data).hexdigest(),  # of the stored gzip bytes, not of the JSON
        "content_bytes": str(len(body)),
        "received_at": NOW.isoformat(),
    }
    assert accepted.record_count == 2


def test_given_secondary_key_when_ingesting_then_accepted(stack: Stack) -> None:
    stack.ingest.ingest(stack.request(orjson.dumps(RECORDS), key=stack.secondary_key))
    assert len(stack.store.names(stack.workspace_id)) == 1


def test_given_gzip_body_when_ingesting_then_stored_as_sent_with_its_sha256(stack: Stack) -> None:
    compressed = gzip.compress(orjson.dumps(RECORDS))

    accepted = stack.ingest.ingest(stack.request(compressed, content_encoding="gzip"))

    blob = stack.store.get_raw(stack.workspace_id, accepted.blob_name)
    assert blob.data == compressed
    assert blob.metadata["sha256"] == accepted.sha256 == hashlib.sha256(compressed).hexdigest()


def test_given_single_object_when_ingesting_then_one_record(stack: Stack) -> None:
    accepted = stack.ingest.ingest(stack.request(orjson.dumps(RECORDS[0])))
    assert accepted.record_count == 1


def test_given_optional_headers_when_ingesting_then_kept_in_metadata(stack: Stack) -> None:
    resource = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm"
    accepted = stack.ingest.ingest(
        stack.request(orjson.dumps(RECORDS), time_generated_field="EventTime", x_ms_AzureResourceId=resource)
    )
    metadata = stack.store.get_raw(stack.workspace_id, accepted.blob_name).metadata
    assert metadata["time_generated_field"] == "EventTime"
    assert metadata["azure_resource_id"] == resource


def _refused(stack: Stack, request: IngestRequest) -> SluiceError:
    with pytest.raises(SluiceError) as caught:
        stack.ingest.ingest(request)
    assert stack.store.names(stack.workspace_id) == [], "a refused request must write nothing"
    return caught.value


GOOD = orjson.dumps(RECORDS)


@pytest.mark.parametrize(
    ("build", "status", "code"),
    [
        (lambda s: s.request(b"[{"), 400, "InvalidDataFormat"),
        (lambda s: s.request(b"\xff\xfe"), 400, "InvalidDataFormat"),
        (lambda s: s.request(b"[]"), 400, "InvalidDataFormat"),
        (lambda s: s.request(b"[1, 2]"), 400, "InvalidDataFormat"),
        (lambda s: s.request(b'"text"'), 400, "InvalidDataFormat"),
        (lambda s: s.request(GOOD, Log_Type=""), 400, "MissingLogType"),
        (lambda s: s.request(GOOD, Log_Type="bad-type!"), 400, "InvalidLogType"),
        (lambda s: s.request(GOOD, Log_Type="A" * 101), 400, "InvalidLogType"),
        (lambda s: s.request(GOOD, Log_Type="\u0391pp"), 400, "InvalidLogType"),  # Greek capital alpha
        (lambda s: s.request(GOOD, Log_Type="../x"), 400, "InvalidLogType"),
        (lambda s: s.request(GOOD, content_type="text/plain"), 400, "UnsupportedContentType"),
        (lambda s: s.request(GOOD, content_type=""), 400, "MissingContentType"),
        (lambda s: s.request(GOOD, content_encoding="br"), 400, "UnsupportedContentType"),
        (lambda s: s.request(GOOD, params={}), 400, "MissingApiVersion"),
        (lambda s: s.request(GOOD, params={"api-version": "2023-01-01"}), 400, "InvalidApiVersion"),
        (lambda s: s.request(GOOD, key="QUJD"), 403, "InvalidAuthorization"),
        (
            lambda s: s.request(GOOD, workspace_id="11111111-2222-3333-4444-555555555555"),
            403,
            "InvalidAuthorization",
        ),
        (lambda s: s.request(GOOD, date=NOW - timedelta(minutes=16)), 403, "InvalidAuthorization"),
        (lambda s: s.request(GOOD, Authorization="SharedKey nope:YWJj"), 400, "InvalidCustomerId"),
        (lambda s: s.request(GOOD, Authorization=""), 403, "InvalidAuthorization"),
        (lambda s: s.request(GOOD, content_encoding="gzip"), 400, "InvalidDataFormat"),
        (lambda s: s.request(GOOD, Content_Length=str(MAX_BODY_BYTES + 1)), 413, "RequestEntityTooLarge"),
    ],
)
def test_given_bad_request_when_ingesting_then_refused_with_azure_code(
    stack: Stack, build: object, status: int, code: str
) -> None:
    error = _refused(stack, build(stack))  # type: ignore[operator]
    assert (http_status(error), error.code) == (status, code)
    assert error.message


def test_given_body_of_other_length_than_signed_when_ingesting_then_forbidden(stack: Stack) -> None:
    # The Data Collector signature covers the body's length, not its bytes (TLS protects those).
    request = stack.request(GOOD)
    tampered = replace(request, body=GOOD.replace(b"hello", b"hello!"))
    assert http_status(_refused(stack, tampered)) == 403


def test_given_body_over_limit_when_ingesting_then_413(stack: Stack) -> None:
    body = b"[" + b" " * MAX_BODY_BYTES + b"{}]"
    assert http_status(_refused(stack, stack.request(body))) == 413


def test_given_gzip_bomb_when_ingesting_then_413_without_inflating_it_all(stack: Stack) -> None:
    bomb = gzip.compress(b"[" + b" " * (4 * MAX_BODY_BYTES) + b"]", compresslevel=9)
    assert len(bomb) < 200_000

    tracemalloc.start()
    try:
        error = _refused(stack, stack.request(bomb, content_encoding="gzip"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert http_status(error) == 413
    # The bomb inflates to 4x the limit; zlib's growing output buffer costs up to 2x what is kept.
    assert peak < 3 * MAX_BODY_BYTES, "inflating must stop at the limit, not hold the whole bomb"


def test_given_content_length_with_non_ascii_digits_when_ingesting_then_no_crash(stack: Stack) -> None:
    accepted = stack.ingest.ingest(stack.request(GOOD, Content_Length="\u00b2"))
    assert accepted.record_count == 2


def test_given_disabled_workspace_when_ingesting_then_inactive_customer(stack: Stack) -> None:
    workspace = stack.registry.workspaces[stack.workspace_id]
    stack.registry.workspaces[stack.workspace_id] = replace(workspace, state=WorkspaceState.DISABLED)
    error = _refused(stack, stack.request(GOOD))
    assert (http_status(error), error.code) == (403, "InactiveCustomer")


def test_given_key_of_workspace_a_when_posting_as_b_then_forbidden_and_b_untouched(stack: Stack) -> None:
    other = create_workspace(registry=stack.registry, secrets=stack.secrets, containers=stack.store)
    request = stack.request(GOOD, key=stack.key, workspace_id=other.workspace.workspace_id)

    error = _refused(stack, request)

    assert error.code == "InvalidAuthorization"
    assert stack.store.names(other.workspace.workspace_id) == []


def test_given_multi_member_gzip_when_inflating_then_members_concatenate() -> None:
    assert gunzip_bounded(gzip.compress(b"ab") + gzip.compress(b"cd"), max_bytes=10) == b"abcd"


@pytest.mark.parametrize("data", [gzip.compress(b"abc")[:-3], gzip.compress(b"abc") + b"junk", b"not gzip"])
def test_given_truncated_or_trailing_garbage_when_inflating_then_invalid(data: bytes) -> None:
    with pytest.raises(SluiceError) as caught:
        gunzip_bounded(data, max_bytes=100)
    assert caught.value.code == "InvalidDataFormat"
