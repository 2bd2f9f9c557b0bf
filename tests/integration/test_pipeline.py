"""End to end in process: the function folders' `main` called with the objects the Functions host
builds (HttpRequest, EventGridEvent, TimerRequest), on the real runtime (Azurite + SQLite or
PostgreSQL). Requests are signed here from Microsoft's documented SharedKey recipe."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

import ingest_http
import process_blob
import retention_timer
from devhost.azurite import Azurite
from shared.aggregate import UsageRow
from shared.errors import DatabaseUnavailable
from shared.plans import Plan
from shared.rawstore import quarantine_name
from shared.retention import PurgeReport, Retention
from shared.workspaces import Workspace, WorkspaceState, new_shared_key, shared_key_secret_name
from tests.support.datacollector import blob_created_event, signed_request, timer_request
from tests.support.runtime import Runtime
from tests.support.storage import azurite_for_tests, raw_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """The module's own: retention runs over every workspace in the registry, which on the session's
    Azurite holds every earlier test's workspaces too."""
    yield from azurite_for_tests(tmp_path_factory)


LOG_TYPE = "Sluice_CL"
MAX_BODY = 30 * 1024 * 1024
RAW_BLOB = re.compile(
    r"raw/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/(?P<log_type>[A-Za-z0-9_]+)/[0-9a-f]{32}\.json\.gz"
)


def record_text(record: dict[str, Any]) -> bytes:
    """A record's JSON text as posted, with json.dumps's default ", " and ": " separators. Its length is
    the record's volume: the spaces inside it count, the array's brackets and separators do not."""
    return json.dumps(record).encode("utf-8")


def records_body(records: list[dict[str, Any]]) -> bytes:
    return b"[" + b", ".join(map(record_text, records)) + b"]"


def post(runtime: Runtime, body: bytes, **options: Any) -> func.HttpResponse:
    options.setdefault("workspace_id", runtime.workspace_id)
    options.setdefault("key_b64", runtime.workspace.primary_key)
    return ingest_http.main(signed_request(body=body, **options))


def download(service: BlobServiceClient, workspace_id: str, name: str) -> tuple[bytes, dict[str, str]]:
    blob = service.get_blob_client(f"ws-{workspace_id}", name)
    data = blob.download_blob(decompress=False).readall()
    return data, dict(blob.get_blob_properties().metadata)


def deliver(workspace_id: str, name: str) -> None:
    process_blob.main(blob_created_event(f"ws-{workspace_id}", name))


def hour_of(name: str) -> datetime:
    match = RAW_BLOB.fullmatch(name)
    assert match, name
    return datetime(int(match["y"]), int(match["m"]), int(match["d"]), int(match["h"]), tzinfo=UTC)


def expected_usage(records: list[dict[str, Any]], *, hour: datetime, log_type: str) -> list[UsageRow]:
    totals: dict[str, list[int]] = {}
    for record in records:
        counts = totals.setdefault(str(record.get("Computer", "")), [0, 0])
        counts[0] += 1
        counts[1] += len(record_text(record))
    return [
        UsageRow(hour=hour, log_type=log_type, computer=computer, records=n, bytes=size)
        for computer, (n, size) in sorted(totals.items())
    ]


# -- the happy path, on both databases -----------------------------------------------------------------


def test_given_a_signed_post_when_ingested_and_its_event_sent_three_times_then_stored_once_and_counted_once(
    runtime: Runtime,
) -> None:
    records: list[dict[str, Any]] = [
        {"Computer": "web-1", "Message": "started", "Level": 4},
        {"Computer": "web-1", "Message": "request served in 12 ms"},
        {"Computer": "db-1", "Message": "checkpoint", "Duration": 1.5},
        {"Message": "no computer field"},
    ]
    body = records_body(records)
    before = datetime.now(UTC)

    response = post(runtime, body, log_type=LOG_TYPE)

    after = datetime.now(UTC)
    assert response.status_code == 200, response.get_body()
    names = runtime.blobs()
    assert len(names) == 1
    name = names[0]
    match = RAW_BLOB.fullmatch(name)
    assert match and match["log_type"] == LOG_TYPE
    data, metadata = download(runtime.blob_service, runtime.workspace_id, name)
    assert gzip.decompress(data) == body
    assert metadata["workspace_id"] == runtime.workspace_id
    assert metadata["log_type"] == LOG_TYPE
    assert metadata["record_count"] == str(len(records))
    assert metadata["sha256"] == hashlib.sha256(data).hexdigest()  # of the stored gzip bytes
    received_at = datetime.fromisoformat(metadata["received_at"])
    assert before <= received_at <= after
    assert hour_of(name) == received_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    event = blob_created_event(f"ws-{runtime.workspace_id}", name, content_length=len(data))
    for _ in range(3):  # Event Grid delivers at least once
        process_blob.main(event)

    database = runtime.services.database
    assert database.list_usage(runtime.workspace_id) == expected_usage(
        records, hour=hour_of(name), log_type=LOG_TYPE
    )
    assert database.blob_processed(runtime.workspace_id, name)


def test_given_a_gzip_encoded_post_when_ingested_then_stored_exactly_as_sent_and_counted(
    runtime: Runtime,
) -> None:
    records = [{"Computer": "edge-7", "Value": i} for i in range(50)]
    plain = records_body(records)
    sent = gzip.compress(plain, compresslevel=9)

    response = post(runtime, sent, log_type="Gzipped_CL", extra_headers={"Content-Encoding": "gzip"})

    assert response.status_code == 200, response.get_body()
    [name] = runtime.blobs()
    data, metadata = download(runtime.blob_service, runtime.workspace_id, name)
    assert data == sent
    assert metadata["sha256"] == hashlib.sha256(sent).hexdigest()
    assert metadata["record_count"] == "50"
    deliver(runtime.workspace_id, name)
    assert runtime.services.database.list_usage(runtime.workspace_id) == expected_usage(
        records, hour=hour_of(name), log_type="Gzipped_CL"
    )


def test_given_posts_of_two_log_types_and_two_workspaces_when_processed_then_each_workspace_sees_only_its_own(
    runtime: Runtime,
) -> None:
    other = runtime.new_workspace()
    other_id = other.workspace.workspace_id
    mine = [{"Computer": "a", "n": 1}]
    theirs = [{"Computer": "b", "n": 2}, {"Computer": "b", "n": 3}]

    assert post(runtime, records_body(mine), log_type="Mine_CL").status_code == 200
    assert post(runtime, records_body(mine), log_type="Other_CL").status_code == 200
    assert (
        post(runtime, records_body(theirs), workspace_id=other_id, key_b64=other.secondary_key).status_code
        == 200
    )
    for workspace_id in (runtime.workspace_id, other_id):
        for name in runtime.blobs(workspace_id):
            deliver(workspace_id, name)

    database = runtime.services.database
    mine_rows = database.list_usage(runtime.workspace_id)
    theirs_rows = database.list_usage(other_id)
    assert sorted((r.log_type, r.computer, r.records) for r in mine_rows) == [
        ("Mine_CL", "a", 1),
        ("Other_CL", "a", 1),
    ]
    assert [(r.log_type, r.computer, r.records) for r in theirs_rows] == [(LOG_TYPE, "b", 2)]


# -- refused requests: status, error code, and nothing stored ------------------------------------------

GOOD_BODY = records_body([{"Computer": "web-1", "Message": "hello"}])


def gzip_bomb() -> bytes:
    # About 30 KB on the wire, 31 MB once inflated: past the 30 MB limit.
    return gzip.compress(b"[" + b" " * (31 * 1024 * 1024) + b"]", compresslevel=9)


RequestBuilder = Callable[[Runtime], func.HttpRequest]


def signed(
    body: bytes | Callable[[], bytes] = GOOD_BODY, *, date_offset: timedelta | None = None, **options: Any
) -> RequestBuilder:
    """Builds the request when the test runs: the date is taken then (a skew stays exactly what the
    case says however long collection took), and large bodies exist only during their test."""

    def build(runtime: Runtime) -> func.HttpRequest:
        options.setdefault("workspace_id", runtime.workspace_id)
        options.setdefault("key_b64", runtime.workspace.primary_key)
        if date_offset is not None:
            options["date"] = datetime.now(UTC) + date_offset
        return signed_request(body=body() if callable(body) else body, **options)

    return build


def without_header(header: str, builder: RequestBuilder) -> RequestBuilder:
    def build(runtime: Runtime) -> func.HttpRequest:
        request = builder(runtime)
        headers = {k: v for k, v in request.headers.items() if k.lower() != header.lower()}
        return func.HttpRequest(
            method="POST",
            url=request.url,
            headers=headers,
            params=dict(request.params),
            body=request.get_body(),
        )

    return build


REFUSALS: dict[str, tuple[RequestBuilder, int, str]] = {
    "invalid JSON": (signed(b'{"Computer": "web-1",'), 400, "InvalidDataFormat"),
    "not JSON at all": (signed(b"hello"), 400, "InvalidDataFormat"),
    "empty array": (signed(b"[]"), 400, "InvalidDataFormat"),
    "array of non-objects": (signed(b"[1, 2, 3]"), 400, "InvalidDataFormat"),
    "array mixing objects and strings": (signed(b'[{"a": 1}, "b"]'), 400, "InvalidDataFormat"),
    "JSON string": (signed(b'"just a string"'), 400, "InvalidDataFormat"),
    "empty body": (signed(b""), 400, "InvalidDataFormat"),
    "missing Log-Type": (signed(log_type=None), 400, "MissingLogType"),
    "Log-Type with punctuation": (signed(log_type="bad-type!"), 400, "InvalidLogType"),
    "Log-Type of 101 characters": (signed(log_type="L" * 101), 400, "InvalidLogType"),
    "non-ASCII Log-Type": (signed(log_type="Événement"), 400, "InvalidLogType"),
    "text/plain content": (signed(content_type="text/plain"), 400, "UnsupportedContentType"),
    "missing content type": (signed(content_type=None), 400, "MissingContentType"),
    "unsupported content encoding": (
        signed(extra_headers={"Content-Encoding": "br"}),
        400,
        "UnsupportedContentType",
    ),
    "corrupt gzip": (
        signed(b"\x1f\x8b\x08\x00garbage", extra_headers={"Content-Encoding": "gzip"}),
        400,
        "InvalidDataFormat",
    ),
    "missing api-version": (signed(params={}), 400, "MissingApiVersion"),
    "wrong api-version": (signed(params={"api-version": "2023-01-01"}), 400, "InvalidApiVersion"),
    "bad signature": (
        signed(key_b64=base64.b64encode(secrets.token_bytes(64)).decode()),
        403,
        "InvalidAuthorization",
    ),
    "signature over another length": (
        signed(sign_content_length=len(GOOD_BODY) + 1),
        403,
        "InvalidAuthorization",
    ),
    "unknown workspace": (signed(workspace_id=str(uuid.uuid4())), 403, "InvalidAuthorization"),
    "missing Authorization": (without_header("Authorization", signed()), 403, "InvalidAuthorization"),
    "missing x-ms-date": (without_header("x-ms-date", signed()), 403, "InvalidAuthorization"),
    "x-ms-date 16 minutes old": (
        signed(date_offset=-timedelta(minutes=16)),
        403,
        "InvalidAuthorization",
    ),
    "x-ms-date 16 minutes ahead": (
        signed(date_offset=timedelta(minutes=16)),
        403,
        "InvalidAuthorization",
    ),
    "workspace id that is not a GUID": (signed(workspace_id="not-a-guid"), 400, "InvalidCustomerId"),
    "body over 30 MB": (signed(lambda: b"[" + b" " * MAX_BODY + b"]"), 413, "RequestEntityTooLarge"),
    "gzip bomb": (
        signed(gzip_bomb, extra_headers={"Content-Encoding": "gzip"}),
        413,
        "RequestEntityTooLarge",
    ),
}


def assert_refused(response: func.HttpResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_body()[:300]
    assert response.headers.get("x-ms-error-code") == code
    document = json.loads(response.get_body())
    assert document["Error"] == code
    assert document.get("Message")


@pytest.mark.parametrize("case", list(REFUSALS))
def test_given_a_bad_request_when_posted_then_refused_with_its_code_and_nothing_is_stored(
    sqlite_runtime: Runtime, case: str
) -> None:
    build, status, code = REFUSALS[case]

    response = ingest_http.main(build(sqlite_runtime))

    assert_refused(response, status, code)
    assert sqlite_runtime.blobs() == []


def test_given_workspace_a_key_with_workspace_b_id_when_posted_then_refused_and_neither_container_has_data(
    sqlite_runtime: Runtime,
) -> None:
    workspace_a = sqlite_runtime.workspace
    workspace_b = sqlite_runtime.new_workspace()
    id_a, id_b = workspace_a.workspace.workspace_id, workspace_b.workspace.workspace_id

    for key in (workspace_a.primary_key, workspace_a.secondary_key):
        response = post(sqlite_runtime, GOOD_BODY, workspace_id=id_b, key_b64=key)
        assert_refused(response, 403, "InvalidAuthorization")

    assert sqlite_runtime.blobs(id_a) == []
    assert sqlite_runtime.blobs(id_b) == []
    # Control: the same key signs for its own workspace, and that lands in A only.
    assert (
        post(sqlite_runtime, GOOD_BODY, workspace_id=id_a, key_b64=workspace_a.primary_key).status_code == 200
    )
    assert len(sqlite_runtime.blobs(id_a)) == 1
    assert sqlite_runtime.blobs(id_b) == []


def test_given_the_secondary_key_and_a_lower_case_header_set_when_posted_then_accepted(
    sqlite_runtime: Runtime,
) -> None:
    request = signed_request(
        workspace_id=sqlite_runtime.workspace_id.upper(),  # the id is a GUID, case-insensitive
        key_b64=sqlite_runtime.workspace.secondary_key,
        body=GOOD_BODY,
        content_type="application/json; charset=utf-8",
        extra_headers={"time-generated-field": "TimeGenerated"},
    )

    response = ingest_http.main(request)

    assert response.status_code == 200, response.get_body()
    [name] = sqlite_runtime.blobs()
    _, metadata = download(sqlite_runtime.blob_service, sqlite_runtime.workspace_id, name)
    assert metadata["time_generated_field"] == "TimeGenerated"


def test_given_a_disabled_workspace_when_posted_with_its_valid_key_then_inactive_customer(
    sqlite_runtime: Runtime,
) -> None:
    current = sqlite_runtime.services
    workspace_id = str(uuid.uuid4())
    key = new_shared_key()
    current.secrets.set_secret(shared_key_secret_name(workspace_id, "primary"), key)
    current.raw_store.create_workspace_container(workspace_id)
    current.registry.create_workspace(
        Workspace(
            workspace_id=workspace_id,
            plan=Plan.STANDARD,
            state=WorkspaceState.DISABLED,
            created_at=datetime.now(UTC),
        )
    )

    response = post(sqlite_runtime, GOOD_BODY, workspace_id=workspace_id, key_b64=key)

    assert_refused(response, 403, "InactiveCustomer")
    assert sqlite_runtime.blobs(workspace_id) == []


# -- process_blob on events it must not count ---------------------------------------------------------


def test_given_events_that_are_not_workspace_raw_blobs_when_delivered_then_ignored_without_error(
    sqlite_runtime: Runtime,
) -> None:
    workspace_id = sqlite_runtime.workspace_id
    name = raw_name(date(2024, 1, 1))
    data = gzip.compress(records_body([{"Computer": "x"}]))
    sqlite_runtime.blob_service.get_blob_client(f"ws-{workspace_id}", name).upload_blob(
        data, metadata={"workspace_id": workspace_id, "sha256": hashlib.sha256(data).hexdigest()}
    )
    ignored = [
        blob_created_event(f"ws-{workspace_id}", name, event_type="Microsoft.Storage.BlobDeleted"),
        blob_created_event("not-a-workspace", raw_name(date(2024, 1, 1))),
        blob_created_event(f"ws-{workspace_id}", "notes/readme.txt"),
        blob_created_event(f"ws-{workspace_id}", raw_name(date(2024, 1, 1))),  # gone before processing
    ]

    for event in ignored:
        process_blob.main(event)

    database = sqlite_runtime.services.database
    assert database.list_usage(workspace_id) == []
    assert database.blob_processed(workspace_id, name) is False
    # Control: the same blob through a BlobCreated event is counted.
    deliver(workspace_id, name)
    assert [r.records for r in database.list_usage(workspace_id)] == [1]


def test_given_a_blob_in_b_s_container_claiming_workspace_a_when_delivered_then_nobody_counts_it(
    sqlite_runtime: Runtime,
) -> None:
    id_a = sqlite_runtime.workspace_id
    id_b = sqlite_runtime.new_workspace().workspace.workspace_id
    data = gzip.compress(records_body([{"Computer": "x"}]))
    name = raw_name(date(2024, 1, 1))
    sqlite_runtime.blob_service.get_blob_client(f"ws-{id_b}", name).upload_blob(
        data,
        metadata={"workspace_id": id_a, "sha256": hashlib.sha256(data).hexdigest(), "record_count": "1"},
    )

    deliver(id_b, name)

    database = sqlite_runtime.services.database
    assert database.list_usage(id_a) == []
    assert database.list_usage(id_b) == []


def test_given_a_blob_whose_content_does_not_match_its_sha256_when_delivered_then_it_is_quarantined(
    runtime: Runtime,
) -> None:
    body = records_body([{"Computer": "x"}])
    name = raw_name(date(2024, 1, 1))
    runtime.blob_service.get_blob_client(f"ws-{runtime.workspace_id}", name).upload_blob(
        gzip.compress(body),
        metadata={"workspace_id": runtime.workspace_id, "sha256": "0" * 64, "record_count": "1"},
    )

    deliver(runtime.workspace_id, name)  # acknowledged: a poison blob is not redelivered for a day

    database = runtime.services.database
    assert database.list_usage(runtime.workspace_id) == []
    assert database.blob_processed(runtime.workspace_id, name) is False
    assert runtime.blobs() == [quarantine_name(name)]


# -- retention through Azurite ------------------------------------------------------------------------

RETENTION_NOW = datetime(2024, 3, 15, 2, 0, tzinfo=UTC)


def put_days(service: BlobServiceClient, workspace_id: str, days: list[date]) -> dict[date, list[str]]:
    names: dict[date, list[str]] = {}
    container = service.get_container_client(f"ws-{workspace_id}")
    for day in days:
        names[day] = [raw_name(day, hour=0), raw_name(day, hour=23, log_type="Late_CL")]
        for name in names[day]:
            container.upload_blob(name, gzip.compress(b'{"a":1}'))
    return names


def report_of(reports: list[PurgeReport], workspace_id: str) -> PurgeReport:
    [report] = [r for r in reports if isinstance(r, PurgeReport) and r.workspace_id == workspace_id]
    return report


def test_given_free_and_standard_workspaces_when_retention_runs_then_exactly_the_days_outside_each_window_go(
    sqlite_runtime: Runtime,
) -> None:
    service = sqlite_runtime.blob_service
    free = sqlite_runtime.new_workspace(Plan.FREE).workspace.workspace_id
    standard = sqlite_runtime.new_workspace(Plan.STANDARD).workspace.workspace_id
    # Free keeps 7 days: the window starts 2024-03-08 02:00, so 03-07 (ends 03-08 00:00) is wholly
    # outside and 03-08 (the boundary day) is partly inside and kept.
    free_expired = [date(2024, 2, 1), date(2024, 3, 6), date(2024, 3, 7)]
    free_kept = [date(2024, 3, 8), date(2024, 3, 9), date(2024, 3, 14), date(2024, 3, 15)]
    # Standard keeps 30 days: the window starts 2024-02-14 02:00.
    standard_expired = [date(2023, 12, 31), date(2024, 2, 12), date(2024, 2, 13)]
    standard_kept = [date(2024, 2, 14), date(2024, 2, 15), date(2024, 3, 7), date(2024, 3, 15)]
    free_names = put_days(service, free, free_expired + free_kept)
    standard_names = put_days(service, standard, standard_expired + standard_kept)
    current = sqlite_runtime.services

    reports = Retention.from_services(current).run(now=RETENTION_NOW)

    assert report_of(reports, free).days_deleted == free_expired
    assert report_of(reports, free).blobs_deleted == 2 * len(free_expired)
    assert report_of(reports, standard).days_deleted == standard_expired
    assert report_of(reports, standard).blobs_deleted == 2 * len(standard_expired)
    assert sqlite_runtime.blobs(free) == sorted(n for d in free_kept for n in free_names[d])
    assert sqlite_runtime.blobs(standard) == sorted(n for d in standard_kept for n in standard_names[d])
    assert sorted(current.raw_store.list_raw_days(free)) == free_kept
    assert sorted(current.raw_store.list_raw_days(standard)) == standard_kept

    again = Retention.from_services(current).run(now=RETENTION_NOW)

    for workspace_id in (free, standard):
        assert report_of(again, workspace_id).days_deleted == []
        assert report_of(again, workspace_id).blobs_deleted == 0
    assert sqlite_runtime.blobs(free) == sorted(n for d in free_kept for n in free_names[d])
    assert sqlite_runtime.blobs(standard) == sorted(n for d in standard_kept for n in standard_names[d])


def test_given_now_exactly_at_midnight_when_retention_runs_then_the_day_ending_at_the_window_start_goes(
    sqlite_runtime: Runtime,
) -> None:
    free = sqlite_runtime.new_workspace(Plan.FREE).workspace.workspace_id
    midnight = datetime(2024, 3, 15, tzinfo=UTC)  # window starts 2024-03-08 00:00
    put_days(sqlite_runtime.blob_service, free, [date(2024, 3, 7), date(2024, 3, 8)])
    current = sqlite_runtime.services

    reports = Retention.from_services(current).run(now=midnight)

    assert report_of(reports, free).days_deleted == [date(2024, 3, 7)]
    assert current.raw_store.list_raw_days(free) == [date(2024, 3, 8)]


def test_given_the_timer_fires_when_retention_timer_runs_then_old_raw_days_go_and_today_stays(
    sqlite_runtime: Runtime,
) -> None:
    free = sqlite_runtime.new_workspace(Plan.FREE).workspace.workspace_id
    today = datetime.now(UTC).date()
    old = today - timedelta(days=400)
    names = put_days(sqlite_runtime.blob_service, free, [old, today])

    retention_timer.main(timer_request())

    assert sqlite_runtime.blobs(free) == sorted(names[today])


def test_given_the_database_fails_once_transiently_when_processing_then_retried_and_counted_once(
    sqlite_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [{"Computer": "web-1", "Message": "a"}, {"Computer": "web-1", "Message": "b"}]
    assert post(sqlite_runtime, records_body(records)).status_code == 200
    (name,) = sqlite_runtime.blobs()
    database = sqlite_runtime.services.database
    real_apply = database.apply_blob
    failures = iter([DatabaseUnavailable("the database failed over")])

    def apply_once_failing(*args: Any, **kwargs: Any) -> bool:
        for failure in failures:
            raise failure
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(database, "apply_blob", apply_once_failing)

    deliver(sqlite_runtime.workspace_id, name)

    (row,) = database.list_usage(sqlite_runtime.workspace_id)
    assert (row.computer, row.records) == ("web-1", 2)
