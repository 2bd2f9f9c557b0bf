"""The query API's pure core: parameters, continuation tokens, row shapes (shared.query), and who may
read a workspace (shared.readers), with in-memory adapters. The SQL side is in
tests/integration/test_query_sql.py, the HTTP surface in tests/e2e/test_openapi.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.audit import AuthFailureReason
from shared.errors import AuthorizationFailed, InvalidQuery, NotFound, http_status
from shared.query import (
    Aggregate,
    ContinuationSigner,
    Granularity,
    Queries,
    aggregate_of,
    continuation_for,
    continuation_key,
    parse_query,
    shape_row,
    statement_values,
)
from shared.readers import READER_AUDIENCE, READER_ROLE, ReaderAuthenticator, ReaderGrant
from shared.tokens import TokenValidator
from shared.workspaces import (
    WorkspaceDirectory,
    WorkspaceState,
    create_workspace,
    reader_key_secret_name,
    rotate_key,
)
from tests.support.tokens import ISSUER, KID, claims, issuer_key, public_jwk, sign
from tests.unit.fakes import MemoryRawStore, MemoryRegistry, MemorySecrets
from tests.unit.fakes_dcr import StaticKeys

NOW = datetime(2024, 5, 2, 12, 30, tzinfo=UTC)
SIGNER = ContinuationSigner(lambda: b"test-continuation-key")
WORKSPACE_A = str(uuid.uuid4())
WORKSPACE_B = str(uuid.uuid4())


def parse(
    params: Mapping[str, str], aggregate: Aggregate = Aggregate.USAGE, workspace: str = WORKSPACE_A
) -> Any:
    return parse_query(workspace, aggregate, params, now=NOW, signer=SIGNER)


def token_after(params: Mapping[str, str], workspace: str = WORKSPACE_A) -> str:
    query = parse(params, workspace=workspace)
    return continuation_for(
        workspace, query, params, (datetime(2024, 5, 2, 1, tzinfo=UTC), "A", "web-1"), signer=SIGNER
    )


# -- parameters -------------------------------------------------------------------------------------


def test_given_no_parameters_when_parsed_then_the_last_24_hours_by_hour_100_rows() -> None:
    query = parse({})

    assert (query.start, query.end) == (NOW - timedelta(hours=24), NOW)
    assert query.granularity is Granularity.HOUR
    assert query.limit == 100
    assert query.after is None
    assert query.filters == {}


def test_given_filters_of_each_aggregate_when_parsed_then_they_name_key_columns() -> None:
    assert parse({"object": "Processor", "counter": "% Processor Time"}, Aggregate.PERF).filters == {
        "object_name": "Processor",
        "counter_name": "% Processor Time",
    }
    assert parse({"event_id": "7036", "level": "Error"}, Aggregate.EVENTS).filters == {
        "event_id": 7036,
        "level": "Error",
    }
    assert parse({"facility": "auth"}, Aggregate.SYSLOG).filters == {"facility": "auth"}


@pytest.mark.parametrize(
    ("params", "aggregate"),
    [
        ({"granularity": "week"}, Aggregate.USAGE),
        ({"limit": "0"}, Aggregate.USAGE),
        ({"limit": "1001"}, Aggregate.USAGE),
        ({"limit": "ten"}, Aggregate.USAGE),
        ({"from": "yesterday"}, Aggregate.USAGE),
        ({"from": "2024-05-02T00:00:00Z", "to": "2024-05-01T00:00:00Z"}, Aggregate.USAGE),
        ({"from": "2024-05-01T00:00:00Z", "to": "2024-05-01T00:00:00Z"}, Aggregate.USAGE),
        ({"from": "2023-01-01T00:00:00Z", "to": "2024-05-01T00:00:00Z"}, Aggregate.USAGE),
        ({"from": "0001-01-01T00:00:00"}, Aggregate.USAGE),
        ({"counter": "x"}, Aggregate.USAGE),  # perf's filter, not usage's
        ({"event_id": "seven"}, Aggregate.EVENTS),
        ({"event_id": "99999999999"}, Aggregate.EVENTS),
        ({"computer": ""}, Aggregate.SYSLOG),
        ({"computer": "x" * 257}, Aggregate.PERF),
        ({"continuation": "not-a-token"}, Aggregate.USAGE),
    ],
)
def test_given_a_bad_parameter_when_parsed_then_invalid_query_400(
    params: dict[str, str], aggregate: Aggregate
) -> None:
    with pytest.raises(InvalidQuery) as raised:
        parse(params, aggregate)

    assert http_status(raised.value) == 400
    assert raised.value.code == "InvalidQuery"


def test_given_times_with_offsets_or_none_when_parsed_then_utc() -> None:
    query = parse({"from": "2024-05-01T02:00:00+02:00", "to": "2024-05-01T06:00:00"})

    assert (query.start, query.end) == (
        datetime(2024, 5, 1, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 6, tzinfo=UTC),
    )


def test_given_an_unknown_path_segment_then_404_and_the_four_aggregates_are_known() -> None:
    with pytest.raises(NotFound) as raised:
        aggregate_of("logs")

    assert http_status(raised.value) == 404
    assert [aggregate_of(a.value) for a in Aggregate] == list(Aggregate)


# -- continuation tokens ----------------------------------------------------------------------------


def test_given_a_continuation_when_sent_again_then_it_resumes_after_its_key_in_the_first_window() -> None:
    params = {"computer": "web-1"}
    token = token_after(params)

    # A default window moves with the clock; the token keeps the first page's.
    query = parse_query(
        WORKSPACE_A,
        Aggregate.USAGE,
        {**params, "continuation": token},
        now=NOW + timedelta(hours=1),
        signer=SIGNER,
    )

    assert query.after == (datetime(2024, 5, 2, 1, tzinfo=UTC), "A", "web-1")
    assert (query.start, query.end) == (NOW - timedelta(hours=24), NOW)
    assert parse({**params, "continuation": token, "limit": "5"}).limit == 5  # the page size may change


@pytest.mark.parametrize(
    "misuse",
    [
        {"workspace": WORKSPACE_B},
        {"params": {"computer": "web-2"}},
        {"params": {"computer": "web-1", "granularity": "day"}},
        {"aggregate": Aggregate.SYSLOG},
    ],
    ids=["other-workspace", "other-filter", "other-granularity", "other-aggregate"],
)
def test_given_a_continuation_when_used_with_another_workspace_or_query_then_400(
    misuse: dict[str, Any],
) -> None:
    token = token_after({"computer": "web-1"})
    params = misuse.get("params", {"computer": "web-1"})

    with pytest.raises(InvalidQuery, match="another workspace or query"):
        parse(
            {**params, "continuation": token},
            misuse.get("aggregate", Aggregate.USAGE),
            misuse.get("workspace", WORKSPACE_A),
        )


def test_given_a_continuation_whose_payload_was_edited_then_400() -> None:
    token = token_after({})
    payload, mac = token.split(".")
    other = token_after({}, workspace=WORKSPACE_B).split(".")[0]

    for forged in (f"{other}.{mac}", f"{payload}.{mac[:-2]}AA", f"{payload}x.{mac}", payload, "."):
        with pytest.raises(InvalidQuery, match="not one this service issued"):
            parse({"continuation": forged})


def test_given_a_token_signed_with_another_key_then_400() -> None:
    params: dict[str, str] = {}
    query = parse(params)
    foreign = ContinuationSigner(lambda: b"another deployment's key")
    token = continuation_for(WORKSPACE_A, query, params, (NOW, "A", "web-1"), signer=foreign)

    with pytest.raises(InvalidQuery):
        parse({"continuation": token})


def test_given_no_continuation_key_yet_then_the_first_use_makes_one_and_later_uses_read_it() -> None:
    secrets = MemorySecrets()

    first = continuation_key(secrets)

    assert len(first) >= 32
    assert continuation_key(secrets) == first


def test_given_a_page_query_when_bound_then_the_scan_starts_at_the_last_bucket_and_asks_one_row_more() -> (
    None
):
    token = token_after({"from": "2024-05-01T00:00:00Z", "to": "2024-05-03T00:00:00Z"})
    query = parse(
        {"from": "2024-05-01T00:00:00Z", "to": "2024-05-03T00:00:00Z", "continuation": token, "limit": "10"}
    )

    values = statement_values(query)

    assert values["from"] == datetime(2024, 5, 2, 1, tzinfo=UTC)
    assert values["limit"] == 11
    assert (values["after_time"], values["after_1"], values["after_2"]) == query.after
    assert values["key_1"] is None and values["key_2"] is None


# -- rows -------------------------------------------------------------------------------------------


def test_given_a_perf_row_when_shaped_then_the_average_is_total_over_samples() -> None:
    row = (
        datetime(2024, 5, 1, tzinfo=UTC),
        "web-1",
        "Processor",
        "% Processor Time",
        "_Total",
        4,
        100.0,
        5.0,
        40.0,
    )

    assert shape_row(Aggregate.PERF, row) == {
        "time": "2024-05-01T00:00:00+00:00",
        "computer": "web-1",
        "object_name": "Processor",
        "counter_name": "% Processor Time",
        "instance_name": "_Total",
        "samples": 4,
        "total": 100.0,
        "minimum": 5.0,
        "maximum": 40.0,
        "average": 25.0,
    }


@dataclass
class FakeReader:
    pages: list[list[tuple[Any, ...]]]
    asked: list[Mapping[str, Any]] = field(default_factory=list)
    workspaces: list[str] = field(default_factory=list)

    def __call__(self, workspace_id: str) -> FakeReader:
        self.workspaces.append(workspace_id)
        return self

    def __enter__(self) -> FakeReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def query_page(self, aggregate: str, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        self.asked.append(values)
        return self.pages.pop(0)


def test_given_one_row_more_than_the_limit_then_a_continuation_for_the_last_row_shown() -> None:
    hour = datetime(2024, 5, 2, 1, tzinfo=UTC)
    reader = FakeReader(
        [[(hour, "A", "web-1", 1, 10), (hour, "A", "web-2", 2, 20)], [(hour, "A", "web-2", 2, 20)]]
    )
    queries = Queries(readers=reader, counters=NoCounters(), plans={}, signer=SIGNER, clock=lambda: NOW)

    first = queries.page(WORKSPACE_A, Aggregate.USAGE, {"limit": "1"})
    second = queries.page(WORKSPACE_A, Aggregate.USAGE, {"limit": "1", "continuation": first["continuation"]})

    assert [r["computer"] for r in first["rows"]] == ["web-1"]
    assert reader.asked[1]["after_2"] == "web-1"
    assert [r["computer"] for r in second["rows"]] == ["web-2"]
    assert second["continuation"] is None
    assert reader.workspaces == [WORKSPACE_A, WORKSPACE_A]


class NoCounters:
    def read(self, workspace_id: str, day: Any) -> Any:
        from shared.limits import NO_COUNT

        return NO_COUNT


# -- who may read -----------------------------------------------------------------------------------


@dataclass
class MemoryGrants:
    granted: set[tuple[str, str]] = field(default_factory=set)

    def is_granted(self, workspace_id: str, principal: str) -> bool:
        return (workspace_id, principal) in self.granted

    def grant(self, grant: ReaderGrant) -> bool:
        self.granted.add((grant.workspace_id, grant.principal))
        return True

    def revoke(self, workspace_id: str, principal: str) -> bool:
        self.granted.discard((workspace_id, principal))
        return True

    def list_grants(self, workspace_id: str) -> list[ReaderGrant]:
        return []


@dataclass
class Tenants:
    authenticator: ReaderAuthenticator
    grants: MemoryGrants
    secrets: MemorySecrets
    registry: MemoryRegistry
    a: str
    a_key: str
    b: str
    b_key: str


PRINCIPAL = str(uuid.uuid4())


@pytest.fixture
def tenants() -> Tenants:
    registry, secrets, grants = MemoryRegistry(), MemorySecrets(), MemoryGrants()
    made = [create_workspace(registry=registry, secrets=secrets, containers=MemoryRawStore()) for _ in "ab"]
    directory = WorkspaceDirectory(registry=registry, secrets=secrets, cache_ttl_seconds=0)
    tokens = TokenValidator(
        issuer=ISSUER, keys=StaticKeys({KID: public_jwk(issuer_key())}), audiences=(READER_AUDIENCE,)
    )
    return Tenants(
        ReaderAuthenticator(workspaces=directory, grants=grants, tokens=tokens),
        grants,
        secrets,
        registry,
        made[0].workspace.workspace_id,
        made[0].reader_key,
        made[1].workspace.workspace_id,
        made[1].reader_key,
    )


def refused(tenants: Tenants, authorization: str | None, workspace_id: str) -> AuthorizationFailed:
    with pytest.raises(AuthorizationFailed) as raised:
        tenants.authenticator.authenticate(authorization, workspace_id)
    assert http_status(raised.value) == 403
    assert raised.value.code == "InvalidAuthorization"
    return raised.value


def bearer(*, roles: list[str] | None = None, audience: str = READER_AUDIENCE) -> str:
    return "Bearer " + sign(claims(PRINCIPAL, aud=audience, roles=roles))


def test_given_a_s_reader_key_when_reading_a_then_allowed_and_on_b_s_url_then_403(tenants: Tenants) -> None:
    assert tenants.authenticator.authenticate(f"Key {tenants.a_key}", tenants.a).workspace_id == tenants.a

    error = refused(tenants, f"Key {tenants.a_key}", tenants.b)

    assert (error.audit_reason, error.workspace_id) == (AuthFailureReason.BAD_READER_KEY, tenants.b)


def test_given_an_unknown_workspace_or_a_wrong_key_then_the_same_answer(tenants: Tenants) -> None:
    unknown = refused(tenants, f"Key {tenants.a_key}", str(uuid.uuid4()))
    wrong = refused(tenants, "Key not-the-key", tenants.a)
    not_a_guid = refused(tenants, f"Key {tenants.a_key}", "../../etc")

    assert unknown.message == wrong.message == not_a_guid.message
    assert unknown.audit_reason == AuthFailureReason.UNKNOWN_WORKSPACE
    assert unknown.workspace_id is None  # made-up ids never open an audit log of their own


@pytest.mark.parametrize("authorization", [None, "", "Key", "SharedKey x:y", "Basic dXNlcg=="])
def test_given_no_usable_credential_then_403(tenants: Tenants, authorization: str | None) -> None:
    refused(tenants, authorization, tenants.a)


def test_given_an_ingest_key_as_the_reader_key_then_403(tenants: Tenants) -> None:
    primary = tenants.secrets.get_secret(f"ws-{tenants.a}-primary-key")

    refused(tenants, f"Key {primary}", tenants.a)


def test_given_a_workspace_made_before_reader_keys_then_no_key_reads_it_until_the_first_rotation(
    tenants: Tenants,
) -> None:
    tenants.secrets.delete_secret(reader_key_secret_name(tenants.a))
    refused(tenants, "Key ", tenants.a)

    key = rotate_key(
        secrets=tenants.secrets, workspace=tenants.registry.get_workspace(tenants.a), which="reader"
    )

    assert tenants.authenticator.authenticate(f"Key {key}", tenants.a).workspace_id == tenants.a
    refused(tenants, f"Key {tenants.a_key}", tenants.a)  # the old key is refused once rotated


def test_given_a_deleted_workspace_then_its_reader_key_is_refused(tenants: Tenants) -> None:
    workspace = tenants.registry.get_workspace(tenants.a)
    tenants.registry.update_workspace(replace(workspace, state=WorkspaceState.DELETED, deleted_at=NOW))

    refused(tenants, f"Key {tenants.a_key}", tenants.a)


def test_given_a_token_with_the_reader_role_and_a_grant_on_a_then_a_only(tenants: Tenants) -> None:
    tenants.grants.granted.add((tenants.a, PRINCIPAL))

    assert (
        tenants.authenticator.authenticate(bearer(roles=[READER_ROLE]), tenants.a).workspace_id == tenants.a
    )
    error = refused(tenants, bearer(roles=[READER_ROLE]), tenants.b)
    assert (error.audit_reason, error.workspace_id) == (AuthFailureReason.NOT_A_READER, tenants.b)


def test_given_a_token_without_the_role_or_without_the_grant_then_403(tenants: Tenants) -> None:
    refused(tenants, bearer(roles=[READER_ROLE]), tenants.a)  # no grant
    tenants.grants.granted.add((tenants.a, PRINCIPAL))

    for roles in (None, [], ["Sluice.Writer"], "Sluice.Reader"):
        error = refused(
            tenants, "Bearer " + sign(claims(PRINCIPAL, aud=READER_AUDIENCE, roles=roles)), tenants.a
        )
        assert error.audit_reason == AuthFailureReason.NOT_A_READER


def test_given_a_token_for_azure_monitor_or_badly_signed_then_403_not_401(tenants: Tenants) -> None:
    tenants.grants.granted.add((tenants.a, PRINCIPAL))

    monitor = refused(tenants, bearer(roles=[READER_ROLE], audience="https://monitor.azure.com"), tenants.a)
    forged = refused(
        tenants,
        "Bearer "
        + sign(claims(PRINCIPAL, aud=READER_AUDIENCE, roles=[READER_ROLE]), key=issuer_key("attacker")),
        tenants.a,
    )

    assert monitor.audit_reason == forged.audit_reason == AuthFailureReason.BAD_TOKEN


# -- routing ----------------------------------------------------------------------------------------


def test_given_the_repo_s_function_folders_then_query_routes_never_catch_agent_ingest() -> None:
    """ingest_agent's literal `.../logs` (POST) and query_api's `.../{resource}` (GET) share a prefix:
    as in ASP.NET routing, the literal route is tried first and the methods keep them apart."""
    from devhost.azurite import REPO_ROOT
    from devhost.routes import MethodNotAllowed, Router, http_route, route_prefix

    prefix = route_prefix(REPO_ROOT / "host.json")
    router = Router(
        http_route(
            name, json.loads((REPO_ROOT / name / "function.json").read_text())["bindings"][0], prefix=prefix
        )
        for name in ("ingest_agent", "query_api", "openapi", "ingest_http", "register_agent")
    )
    workspace = f"/api/workspaces/{WORKSPACE_A}"

    assert router.resolve("POST", f"{workspace}/logs").route.function_name == "ingest_agent"
    assert router.resolve("GET", f"{workspace}/logs").params == {
        "workspace_id": WORKSPACE_A,
        "resource": "logs",
    }
    assert router.resolve("GET", f"{workspace}/usage").route.function_name == "query_api"
    assert router.resolve("GET", "/api/openapi.json").route.function_name == "openapi"
    with pytest.raises(MethodNotAllowed):
        router.resolve("POST", f"{workspace}/usage")
