"""The plan limits on the real adapters: the daily cap's Table counters on Azurite (conditional
writes, no lost update, a write whose answer is lost counted once, a small retry budget against a
storage that does not answer), many senders on several instances right at the cap, and the 429 answers
of the three ingest routes' function handlers (status, code, Retry-After, nothing stored)."""

from __future__ import annotations

import gzip
import json
import math
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pytest
from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline.transport import HttpRequest, HttpResponse, RequestsTransport
from azure.data.tables import TableServiceClient

import ingest_agent
import ingest_http
import ingest_logs
from shared.agents import EnrollmentRequest
from shared.azure_limits import (
    COUNTER_READ_TIMEOUT_SECONDS,
    COUNTER_RETRIES,
    DAILY_USAGE_TABLE,
    TableDailyCounters,
)
from shared.dcrs import create_rule
from shared.errors import SluiceError, StorageUnavailable
from shared.http import error_response, ingest_request
from shared.ingest import DataCollectorIngest, LimitedWriter, RawWriter
from shared.limits import (
    NO_COUNT,
    DailyCap,
    DailyCount,
    IngestionRate,
    IngestLimits,
    seconds_until_next_utc_midnight,
)
from shared.plans import PLAN_LIMITS, Plan, PlanLimits
from shared.rawstore import MAX_BODY_BYTES
from shared.settings import AZURITE_ACCOUNT, AZURITE_KEY
from shared.workspaces import NewWorkspace
from tests.support.agent_credentials import client_assertion, new_agent_credentials
from tests.support.concurrency import run_together
from tests.support.datacollector import signed_request
from tests.support.runtime import Runtime
from tests.support.tokens import ISSUER, claims, issuer_key, jwk_dict, sign

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 22)
NOON = datetime(2026, 11, 22, 12, tzinfo=UTC)
CAP_BYTES = 1000  # the free plan's daily cap in the handler tests
RATE_BYTES_PER_SECOND = 1024  # the premium plan's rate in the handler tests
PRINCIPAL = "5f2b2c39-1f7d-4a46-9a70-8f7e4e5c9a11"
STREAM = "Custom-Capped_CL"


def counter_entity_bytes(connection_string: str, workspace_id: str, day: date) -> int | None:
    """The day's count as stored, read with the SDK directly; None when there is no counter."""
    table = TableServiceClient.from_connection_string(connection_string).get_table_client(DAILY_USAGE_TABLE)
    found = list(
        table.query_entities(
            "PartitionKey eq @ws and RowKey eq @day", parameters={"ws": workspace_id, "day": day.isoformat()}
        )
    )
    return int(found[0]["bytes"].value) if found else None


def body_of(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    frame = b'{"Message":""}'
    return frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]


# -- the Table counters -------------------------------------------------------------------------------


def test_given_no_table_yet_when_reading_a_count_then_none_and_the_first_write_creates_it(
    azurite_connection_string: str,
) -> None:
    counters = TableDailyCounters(
        TableServiceClient.from_connection_string(azurite_connection_string), table_name="dailyusagefresh"
    )

    assert counters.read("ws-a", DAY) == NO_COUNT
    created = counters.compare_and_set("ws-a", DAY, expected=NO_COUNT, bytes=10, op_id="a")

    assert created is not None and created.bytes == 10 and created.etag
    assert counters.read("ws-a", DAY) == created


def test_given_a_counter_when_two_writers_start_from_the_same_version_then_only_one_commits(
    azurite_connection_string: str,
) -> None:
    service = TableServiceClient.from_connection_string(azurite_connection_string)
    counters = TableDailyCounters(service)
    workspace_id = "ws-race"
    assert counters.compare_and_set(workspace_id, DAY, expected=NO_COUNT, bytes=1, op_id="one") is not None
    assert (
        counters.compare_and_set(workspace_id, DAY, expected=NO_COUNT, bytes=2, op_id="two") is None
    )  # 409: exists
    seen = counters.read(workspace_id, DAY)

    first = counters.compare_and_set(workspace_id, DAY, expected=seen, bytes=seen.bytes + 5, op_id="five")
    second = counters.compare_and_set(
        workspace_id, DAY, expected=seen, bytes=seen.bytes + 7, op_id="seven"
    )  # 412

    assert first is not None and second is None
    assert counters.read(workspace_id, DAY) == first
    assert first.bytes == 6


def test_given_a_count_beyond_32_bits_when_written_then_read_back_exactly(
    azurite_connection_string: str,
) -> None:
    counters = TableDailyCounters(TableServiceClient.from_connection_string(azurite_connection_string))
    small = counters.compare_and_set("ws-big", DAY, expected=NO_COUNT, bytes=1, op_id="one")
    assert small is not None

    big = counters.compare_and_set("ws-big", DAY, expected=small, bytes=5 * 2**32 + 3, op_id="big")

    assert big is not None
    assert counters.read("ws-big", DAY) == DailyCount(bytes=5 * 2**32 + 3, etag=big.etag, op_id="big")


def test_given_a_counter_removed_meanwhile_when_writing_against_its_version_then_a_conflict_not_an_error(
    azurite_connection_string: str,
) -> None:
    service = TableServiceClient.from_connection_string(azurite_connection_string)
    counters = TableDailyCounters(service)
    seen = counters.compare_and_set("ws-gone", DAY, expected=NO_COUNT, bytes=1, op_id="one")
    assert seen is not None
    service.get_table_client(DAILY_USAGE_TABLE).delete_entity("ws-gone", DAY.isoformat())

    assert counters.compare_and_set("ws-gone", DAY, expected=seen, bytes=2, op_id="two") is None


class LosingPutAnswers(RequestsTransport):
    """Sends every request, but when told loses the answer to the next PUT (a conditional replace) after
    the service committed it, as a read timeout would: azure-core's retry policy then sends it again."""

    lose_next_put_answer = False

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        response = super().send(request, **kwargs)
        if request.method == "PUT" and self.lose_next_put_answer:
            self.lose_next_put_answer = False
            raise ServiceResponseError("the answer was lost")
        return response


def losing_counters(connection_string: str) -> tuple[TableDailyCounters, LosingPutAnswers]:
    transport = LosingPutAnswers()
    service = TableServiceClient.from_connection_string(connection_string, transport=transport)
    return TableDailyCounters(service), transport


def test_given_a_replace_whose_answer_is_lost_when_the_sdk_retries_it_then_none_and_a_read_shows_its_op_id(
    azurite_connection_string: str,
) -> None:
    counters, transport = losing_counters(azurite_connection_string)
    seen = counters.compare_and_set("ws-lost", DAY, expected=NO_COUNT, bytes=1, op_id="created")
    assert seen is not None
    transport.lose_next_put_answer = True

    written = counters.compare_and_set("ws-lost", DAY, expected=seen, bytes=2, op_id="replaced")

    assert not transport.lose_next_put_answer, "the answer was lost"
    assert written is None  # the retry's 412: the service saw its own commit as another writer's
    assert counters.read("ws-lost", DAY).op_id == "replaced"
    assert counter_entity_bytes(azurite_connection_string, "ws-lost", DAY) == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda cap, workspace_id: cap.reserve(workspace_id, cap=10_000, size=300, now=NOON), 1300),
        (lambda cap, workspace_id: cap.give_back(workspace_id, day=DAY, size=300), 700),
    ],
    ids=["reservation", "give-back"],
)
def test_given_a_daily_cap_change_whose_answer_is_lost_when_the_sdk_retries_it_then_it_counts_once(
    azurite_connection_string: str, change: Callable[[DailyCap, str], object], expected: int
) -> None:
    counters, transport = losing_counters(azurite_connection_string)
    cap = DailyCap(counters)
    workspace_id = str(uuid.uuid4())
    cap.reserve(workspace_id, cap=10_000, size=1000, now=NOON)
    transport.lose_next_put_answer = True

    change(cap, workspace_id)

    assert not transport.lose_next_put_answer, "the answer was lost"
    assert counter_entity_bytes(azurite_connection_string, workspace_id, DAY) == expected


def test_given_a_table_endpoint_that_never_answers_when_reading_a_count_then_a_503_within_the_budget() -> (
    None
):
    # Connections are accepted (the listen backlog) but no request is ever answered.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/{AZURITE_ACCOUNT}"
        service = TableServiceClient.from_connection_string(
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint={endpoint};"
        )
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            TableDailyCounters(service).read("ws-silent", DAY)
        elapsed = time.monotonic() - started

    # Every attempt waits out the read timeout; the SDK's defaults would wait 300 s, 11 times.
    attempts = COUNTER_RETRIES + 1
    assert attempts * COUNTER_READ_TIMEOUT_SECONDS <= elapsed < attempts * COUNTER_READ_TIMEOUT_SECONDS + 3


# -- many senders on several instances, right at the cap ------------------------------------------------

INSTANCES = 4
SENDERS_PER_INSTANCE = 8
POST_BYTES = 700
# Twenty posts fit below the cap and the 21st starts below it too: exactly 21 are accepted.
BOUNDARY_CAP = 20 * POST_BYTES + POST_BYTES // 2


@dataclass(frozen=True)
class Answer:
    status: int
    code: str | None
    retry_after: str | None


class ConflictCountingCounters(TableDailyCounters):
    """The Table counters, noting how many conditional writes lost to another writer."""

    def __init__(self, service: TableServiceClient) -> None:
        super().__init__(service)
        self.conflicts = 0

    def compare_and_set(
        self, workspace_id: str, day: date, *, expected: DailyCount, bytes: int, op_id: str
    ) -> DailyCount | None:
        written = super().compare_and_set(workspace_id, day, expected=expected, bytes=bytes, op_id=op_id)
        self.conflicts += written is None
        return written


def instance(
    runtime: Runtime, plans: dict[Plan, PlanLimits], now: datetime, counters: TableDailyCounters
) -> DataCollectorIngest:
    """One function instance's ingest: its own limits (buckets, remembered counts) and table client;
    the counters, the workspace registry and the containers are the shared ones."""
    current = runtime.services
    limits = IngestLimits(plans=plans, rate=IngestionRate(), cap=DailyCap(counters))
    return DataCollectorIngest(
        directory=current.directory,
        writer=LimitedWriter(RawWriter(current.raw_store), limits),
        clock=lambda: now,
    )


def test_given_many_senders_on_several_instances_at_the_cap_then_over_by_under_a_post_and_refusals_unstored(
    sqlite_runtime: Runtime,
) -> None:
    now = datetime.now(UTC)
    plans = {
        **PLAN_LIMITS,
        Plan.FREE: PlanLimits(
            raw_retention_days=7,
            daily_cap_bytes=BOUNDARY_CAP,
            ingestion_rate_bytes_per_second=MAX_BODY_BYTES,
            ingestion_burst_bytes=MAX_BODY_BYTES,
        ),
    }
    created = sqlite_runtime.new_workspace(Plan.FREE)
    workspace_id = created.workspace.workspace_id
    counters = [
        ConflictCountingCounters(
            TableServiceClient.from_connection_string(sqlite_runtime.storage_connection_string)
        )
        for _ in range(INSTANCES)
    ]
    instances = [instance(sqlite_runtime, plans, now, c) for c in counters]
    body = body_of(POST_BYTES)

    def send(sender: int) -> Answer:
        request = signed_request(workspace_id=workspace_id, key_b64=created.primary_key, body=body, date=now)
        try:
            instances[sender % INSTANCES].ingest(ingest_request(request))
        except SluiceError as error:
            response = error_response(error)
            document = orjson.loads(response.get_body())
            return Answer(response.status_code, document["Error"], response.headers.get("Retry-After"))
        return Answer(200, None, None)

    answers = run_together(INSTANCES * SENDERS_PER_INSTANCE, send)

    accepted = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    total = len(accepted) * POST_BYTES
    assert BOUNDARY_CAP <= total < BOUNDARY_CAP + POST_BYTES
    assert len(accepted) == 21
    assert counter_entity_bytes(sqlite_runtime.storage_connection_string, workspace_id, now.date()) == total
    assert set(refused) == {Answer(429, "DailyCapExceeded", str(seconds_until_next_utc_midnight(now)))}
    assert len(sqlite_runtime.blobs(workspace_id)) == len(accepted)
    # Each instance first tries to create the day's counter and all but one find it made: the
    # instances did race on the same entity.
    assert sum(c.conflicts for c in counters) >= INSTANCES - 1


# -- the function handlers ----------------------------------------------------------------------------


@pytest.fixture
def limited_runtime(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Runtime:
    """The real services with a 1,000-byte daily cap on the free plan, a 1 KB/s rate on the premium
    plan (SLUICE_PLANS) and a token issuer whose JWKS is a local file, set before they are built."""
    monkeypatch.setenv(
        "SLUICE_PLANS",
        json.dumps(
            {
                "free": {"daily_cap_bytes": CAP_BYTES},
                "premium": {
                    "ingestion_rate_bytes_per_second": RATE_BYTES_PER_SECOND,
                    "ingestion_burst_bytes": MAX_BODY_BYTES,
                },
            }
        ),
    )
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_dict(issuer_key())]}), encoding="utf-8")
    monkeypatch.setenv("SLUICE_TOKEN_ISSUER", ISSUER)
    monkeypatch.setenv("SLUICE_TOKEN_JWKS_URI", str(jwks))
    runtime: Runtime = request.getfixturevalue("sqlite_runtime")
    return runtime


Sender = Callable[[bytes], func.HttpResponse]


def data_collector_sender(runtime: Runtime, created: NewWorkspace) -> Sender:
    workspace_id = created.workspace.workspace_id
    return lambda body: ingest_http.main(
        signed_request(workspace_id=workspace_id, key_b64=created.primary_key, body=body)
    )


def agent_sender(runtime: Runtime, created: NewWorkspace) -> Sender:
    workspace_id = created.workspace.workspace_id
    credentials = new_agent_credentials()
    agent = runtime.services.enrollment.register(
        EnrollmentRequest(
            workspace_id=workspace_id,
            enrollment_key=created.enrollment_key,
            certificate_pem=credentials.certificate_pem,
        )
    )
    url = f"https://127.0.0.1/api/workspaces/{workspace_id}/logs"

    def send(body: bytes) -> func.HttpResponse:
        assertion = client_assertion(credentials, agent_id=agent.agent_id, url=url, body=body)
        return ingest_agent.main(
            func.HttpRequest(
                method="POST",
                url=url,
                params={"api-version": "2016-04-01"},
                route_params={"workspace_id": workspace_id},
                headers={
                    "Authorization": f"Bearer {assertion}",
                    "Content-Type": "application/json",
                    "Log-Type": "Capped_CL",
                },
                body=body,
            )
        )

    return send


def logs_ingestion_sender(runtime: Runtime, created: NewWorkspace) -> Sender:
    current = runtime.services
    rule = create_rule(
        rules=current.dcrs,
        workspaces=current.registry,
        workspace_id=created.workspace.workspace_id,
        streams=[STREAM],
        principals=[PRINCIPAL],
    )

    def send(body: bytes) -> func.HttpResponse:
        array = b"[" + body + b"]"
        return ingest_logs.main(
            func.HttpRequest(
                method="POST",
                url=f"https://127.0.0.1/dataCollectionRules/{rule.immutable_id}/streams/{STREAM}",
                params={"api-version": "2023-01-01"},
                route_params={"immutable_id": rule.immutable_id, "stream": STREAM},
                headers={
                    "Authorization": f"Bearer {sign(claims(PRINCIPAL))}",
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                },
                body=gzip.compress(array),
            )
        )

    return send


def error_code(response: func.HttpResponse) -> str:
    """The code in either route's error shape, checked against x-ms-error-code."""
    document = orjson.loads(response.get_body())
    code = document["Error"] if "Error" in document else document["error"]["code"]
    assert response.headers["x-ms-error-code"] == code
    return str(code)


ROUTES = {
    "data collector": (data_collector_sender, 200),
    "agent": (agent_sender, 200),
    "logs ingestion": (logs_ingestion_sender, 204),
}


@pytest.mark.parametrize("route", ROUTES)
def test_given_a_free_workspace_at_its_cap_when_posting_on_each_route_then_429_to_midnight_and_nothing_stored(
    limited_runtime: Runtime, route: str
) -> None:
    make_sender, success = ROUTES[route]
    created = limited_runtime.new_workspace(Plan.FREE)
    workspace_id = created.workspace.workspace_id
    send = make_sender(limited_runtime, created)
    # The JSON counted is the body decompressed: the logs route's array adds its two brackets.
    assert send(body_of(CAP_BYTES - 10)).status_code == success  # 0 is below the cap
    assert send(body_of(100)).status_code == success  # 990 is below the cap: over by one post
    stored = limited_runtime.blobs(workspace_id)

    before = seconds_until_next_utc_midnight(datetime.now(UTC))
    refused = send(body_of(10))
    after = seconds_until_next_utc_midnight(datetime.now(UTC))

    assert refused.status_code == 429
    assert error_code(refused) == "DailyCapExceeded"
    assert after <= int(refused.headers["Retry-After"]) <= before
    assert limited_runtime.blobs(workspace_id) == stored and len(stored) == 2
    counted = counter_entity_bytes(
        limited_runtime.storage_connection_string, workspace_id, datetime.now(UTC).date()
    )
    assert counted is not None and CAP_BYTES <= counted < CAP_BYTES + 100 + 2


def test_given_a_workspace_whose_plan_has_no_cap_when_posting_then_no_counter_is_kept(
    limited_runtime: Runtime,
) -> None:
    created = limited_runtime.new_workspace(Plan.STANDARD)
    send = data_collector_sender(limited_runtime, created)

    for _ in range(3):
        assert send(body_of(CAP_BYTES)).status_code == 200

    assert (
        counter_entity_bytes(
            limited_runtime.storage_connection_string,
            created.workspace.workspace_id,
            datetime.now(UTC).date(),
        )
        is None
    )


def test_given_a_workspace_that_used_its_burst_when_posting_then_429_too_many_requests_with_retry_after(
    limited_runtime: Runtime,
) -> None:
    created = limited_runtime.new_workspace(Plan.PREMIUM)
    workspace_id = created.workspace.workspace_id
    send = data_collector_sender(limited_runtime, created)
    whole_burst = gzip.compress(body_of(MAX_BODY_BYTES), compresslevel=1)
    assert (
        ingest_http.main(
            signed_request(
                workspace_id=workspace_id,
                key_b64=created.primary_key,
                body=whole_burst,
                extra_headers={"Content-Encoding": "gzip"},
            )
        ).status_code
        == 200
    )

    refused = send(body_of(10 * RATE_BYTES_PER_SECOND))

    assert refused.status_code == 429
    assert error_code(refused) == "TooManyRequests"
    # 10 KB at 1 KB/s, less what refilled since the burst was taken.
    assert (
        1
        <= int(refused.headers["Retry-After"])
        <= math.ceil(10 * RATE_BYTES_PER_SECOND / RATE_BYTES_PER_SECOND)
    )
    assert len(limited_runtime.blobs(workspace_id)) == 1
