"""The query API through its function folder (query_api.main) on the real runtime (Azurite tables,
the local secret store, SQLite): reader keys per workspace, Entra tokens with the reader role and a
grant made by `sluice reader grant`, the audit of refusals and grants, the summary, and the CLI's
read commands on the same core."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pytest

import query_api
from shared.aggregate import Aggregates, UsageRow
from shared.audit import AuditAction
from shared.cli import main as sluice
from shared.limits import utc_day
from shared.processing import LedgerEntry
from shared.readers import READER_AUDIENCE, READER_ROLE
from shared.runtime import reset_services
from shared.workspaces import NewWorkspace
from tests.support.runtime import Runtime
from tests.support.tokens import KID, claims, issuer_key, jwk_dict, sign

pytestmark = pytest.mark.integration

ISSUER = "https://login.example/query-tests/v2.0"
PRINCIPAL = str(uuid.uuid4())
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def api(sqlite_runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Runtime]:
    """The runtime with a token issuer configured, and usage rows in two workspaces."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_dict(issuer_key())]}), encoding="utf-8")
    monkeypatch.setenv("SLUICE_TOKEN_ISSUER", ISSUER)
    monkeypatch.setenv("SLUICE_TOKEN_JWKS_URI", str(jwks))
    reset_services()
    sqlite_runtime.new_workspace()
    for made, computer in (
        (sqlite_runtime.workspace, "a-host"),
        (sqlite_runtime.extra_workspaces[0], "b-host"),
    ):
        entry = LedgerEntry(
            made.workspace.workspace_id, f"raw/x/{uuid.uuid4().hex}.json.gz", '"e"', "ab" * 32, 1
        )
        sqlite_runtime.services.database.apply_blob(
            entry, Aggregates(usage=[UsageRow(HOUR, "App", computer, 2, 20)], perf=[], events=[], syslog=[])
        )
    yield sqlite_runtime


def get(workspace_id: str, resource: str, authorization: str | None, **params: str) -> func.HttpResponse:
    return query_api.main(
        func.HttpRequest(
            method="GET",
            url=f"https://sluice.example/api/workspaces/{workspace_id}/{resource}",
            headers={"Authorization": authorization} if authorization else {},
            params=params,
            route_params={"workspace_id": workspace_id, "resource": resource},
            body=b"",
        )
    )


def document(response: func.HttpResponse) -> Any:
    return orjson.loads(response.get_body())


def b(api: Runtime) -> NewWorkspace:
    return api.extra_workspaces[0]


def token(*, roles: list[str] | None = None) -> str:
    """A token for PRINCIPAL with the reader role, or with `roles` instead."""
    return "Bearer " + sign(
        claims(
            PRINCIPAL, issuer=ISSUER, aud=READER_AUDIENCE, roles=[READER_ROLE] if roles is None else roles
        ),
        kid=KID,
    )


def test_given_a_s_reader_key_when_reading_a_then_a_s_rows_and_on_b_s_url_then_403(api: Runtime) -> None:
    key_a = f"Key {api.workspace.reader_key}"

    own = get(api.workspace_id, "usage", key_a)
    other = get(b(api).workspace.workspace_id, "usage", key_a)
    api.services.auth_failures.flush()

    assert own.status_code == 200
    assert [row["computer"] for row in document(own)["rows"]] == ["a-host"]
    assert other.status_code == 403
    assert document(other)["Error"] == other.headers["x-ms-error-code"] == "InvalidAuthorization"
    failures = [e for e in api.services.audit.read(b(api).workspace.workspace_id).entries]
    assert [(e.action, e.details["reasons"]) for e in failures] == [
        (AuditAction.AUTH_FAILURES, [{"reason": "bad_reader_key", "count": 1}])
    ]


def test_given_an_unknown_workspace_or_no_guid_then_the_same_403_as_a_wrong_key(api: Runtime) -> None:
    key = f"Key {api.workspace.reader_key}"
    unknown = get(str(uuid.uuid4()), "usage", key)
    not_a_guid = get("a#b?c'd", "usage", key)  # characters a table key refuses: never sent to storage
    wrong = get(api.workspace_id, "usage", "Key wrong")

    assert (unknown.status_code, unknown.get_body()) == (wrong.status_code, wrong.get_body())
    assert (not_a_guid.status_code, not_a_guid.get_body()) == (wrong.status_code, wrong.get_body())


def test_given_a_token_with_the_role_when_granted_by_the_cli_then_200_and_after_revoke_403(
    api: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert get(api.workspace_id, "usage", token()).status_code == 403  # no grant yet

    assert sluice(["reader", "grant", "--workspace", api.workspace_id, "--principal", PRINCIPAL]) == 0
    granted = get(api.workspace_id, "usage", token())
    no_role = get(api.workspace_id, "usage", token(roles=[]))
    other_workspace = get(b(api).workspace.workspace_id, "usage", token())
    capsys.readouterr()
    assert sluice(["reader", "list", "--workspace", api.workspace_id, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sluice(["reader", "revoke", "--workspace", api.workspace_id, "--principal", PRINCIPAL]) == 0
    revoked = get(api.workspace_id, "usage", token())

    assert granted.status_code == 200
    assert [row["computer"] for row in document(granted)["rows"]] == ["a-host"]
    assert (no_role.status_code, other_workspace.status_code, revoked.status_code) == (403, 403, 403)
    assert [(g["workspace_id"], g["principal"]) for g in listed] == [(api.workspace_id, PRINCIPAL)]
    actions = [(e.action, e.details) for e in api.services.audit.read(api.workspace_id).entries]
    assert (AuditAction.READER_GRANT, {"principal": PRINCIPAL}) in actions
    assert (AuditAction.READER_REVOKE, {"principal": PRINCIPAL}) in actions


def test_given_the_reader_key_when_rotated_then_the_old_key_is_refused(
    api: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sluice(["workspace", "rotate-key", api.workspace_id, "--which", "reader", "--json"]) == 0
    new_key = json.loads(capsys.readouterr().out)["value"]
    reset_services()  # the directory caches keys for 30 s; a new instance reads the rotated one

    assert get(api.workspace_id, "usage", f"Key {new_key}").status_code == 200
    assert get(api.workspace_id, "usage", f"Key {api.workspace.reader_key}").status_code == 403


def test_given_bad_parameters_or_another_query_s_continuation_then_400_and_an_unknown_resource_404(
    api: Runtime,
) -> None:
    key = f"Key {api.workspace.reader_key}"
    bad = get(api.workspace_id, "usage", key, granularity="week")
    unknown = get(api.workspace_id, "logs", key)
    unknown_without_key = get(api.workspace_id, "logs", None)

    assert bad.status_code == 400
    assert document(bad)["Error"] == "InvalidQuery"
    assert (unknown.status_code, unknown_without_key.status_code) == (404, 404)


def test_given_a_continuation_of_workspace_b_when_sent_to_a_then_400(api: Runtime) -> None:
    entry = LedgerEntry(
        b(api).workspace.workspace_id, f"raw/x/{uuid.uuid4().hex}.json.gz", '"e"', "ab" * 32, 1
    )
    api.services.database.apply_blob(
        entry, Aggregates(usage=[UsageRow(HOUR, "App", "b-host-2", 1, 1)], perf=[], events=[], syslog=[])
    )
    page = document(get(b(api).workspace.workspace_id, "usage", f"Key {b(api).reader_key}", limit="1"))
    assert page["continuation"]

    misused = get(
        api.workspace_id,
        "usage",
        f"Key {api.workspace.reader_key}",
        limit="1",
        continuation=page["continuation"],
    )

    assert misused.status_code == 400
    assert document(misused)["Error"] == "InvalidQuery"


def test_given_the_summary_then_plan_retention_and_today_s_counter(api: Runtime) -> None:
    response = get(api.workspace_id, "summary", f"Key {api.workspace.reader_key}")

    assert response.status_code == 200
    assert document(response) == {
        "workspace_id": api.workspace_id,
        "state": "active",
        "plan": api.workspace.workspace.plan.value,
        "raw_retention_days": api.services.settings.plans[api.workspace.workspace.plan].raw_retention_days,
        "aggregate_retention_days": 390,
        "daily_cap_bytes": api.services.settings.plans[api.workspace.workspace.plan].daily_cap_bytes,
        "today_bytes": 0,
        "today": utc_day(datetime.now(UTC)).isoformat(),
    }


def test_given_the_cli_then_query_and_summary_print_what_the_api_answers(
    api: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sluice(["query", "usage", "--workspace", api.workspace_id, "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert sluice(["query", "usage", "--workspace", api.workspace_id, "--filter", "computer=nope"]) == 0
    table = capsys.readouterr().out
    assert sluice(["summary", "--workspace", api.workspace_id]) == 0
    summary = capsys.readouterr().out

    answered = document(get(api.workspace_id, "usage", f"Key {api.workspace.reader_key}"))
    assert (page["rows"], page["continuation"]) == (answered["rows"], answered["continuation"])
    assert table.strip() == "(none)"
    assert f"workspace_id: {api.workspace_id}" in summary
