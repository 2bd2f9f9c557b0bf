"""The audit log receives what the seeds promise is auditable, through the real entry points: an
authentication failure at the HTTP edge, the operators' commands, a retention purge."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

import ingest_http
from shared.audit import AuditAction
from shared.cli import main as sluice
from shared.retention import Retention
from tests.support.datacollector import signed_request
from tests.support.runtime import Runtime

pytestmark = pytest.mark.integration

BODY = orjson.dumps([{"Computer": "web-1", "Message": "hello"}])


def actions(runtime: Runtime, workspace_id: str | None) -> list[tuple[str, dict[str, object]]]:
    return [(e.action, e.details) for e in runtime.services.audit.read(workspace_id).entries]


def current_entries(runtime: Runtime) -> list[object]:
    return list(runtime.services.audit.read(runtime.workspace_id).entries)


def test_given_a_bad_signature_for_an_existing_workspace_then_its_audit_log_counts_the_failure(
    sqlite_runtime: Runtime,
) -> None:
    wrong_key = base64.b64encode(b"w" * 64).decode()
    request = signed_request(workspace_id=sqlite_runtime.workspace_id, key_b64=wrong_key, body=BODY)

    response = ingest_http.main(request)
    sqlite_runtime.services.auth_failures.flush()

    assert response.status_code == 403
    (entry,) = [
        e for e in actions(sqlite_runtime, sqlite_runtime.workspace_id) if e[0] == AuditAction.AUTH_FAILURES
    ]
    assert entry[1]["reasons"] == [{"reason": "bad_signature", "count": 1}]


def test_given_an_unknown_workspace_then_no_log_is_opened_for_it(sqlite_runtime: Runtime) -> None:
    made_up = "00000000-1111-2222-3333-444444444444"
    request = signed_request(workspace_id=made_up, key_b64=sqlite_runtime.workspace.primary_key, body=BODY)

    assert ingest_http.main(request).status_code == 403
    sqlite_runtime.services.auth_failures.flush()

    assert actions(sqlite_runtime, made_up) == []


def test_given_operator_commands_then_each_is_appended_and_the_chain_verifies(
    sqlite_runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace_id = sqlite_runtime.workspace_id

    assert sluice(["workspace", "set-plan", workspace_id, "--plan", "premium"]) == 0
    assert sluice(["workspace", "rotate-key", workspace_id, "--which", "secondary"]) == 0
    assert sluice(["workspace", "delete", workspace_id]) == 0
    capsys.readouterr()

    assert actions(sqlite_runtime, workspace_id) == [
        (AuditAction.WORKSPACE_SET_PLAN, {"plan": "premium", "previous_plan": "standard"}),
        (AuditAction.KEY_ROTATE, {"slot": "secondary"}),
        (AuditAction.WORKSPACE_DELETE, {}),
    ]
    assert sluice(["audit", "verify", "--workspace", workspace_id]) == 0
    new_secondary = sqlite_runtime.services.secrets.get_secret(f"ws-{workspace_id}-secondary-key")
    assert new_secondary not in orjson.dumps([e.details for e in current_entries(sqlite_runtime)]).decode()


def test_given_a_retention_run_then_each_workspace_gets_its_purge_report(sqlite_runtime: Runtime) -> None:
    current = sqlite_runtime.services

    Retention.from_services(current).run(now=datetime.now(UTC))

    (report,) = [
        d for a, d in actions(sqlite_runtime, sqlite_runtime.workspace_id) if a == AuditAction.RETENTION_PURGE
    ]
    assert report["days_deleted"] == []
    for counted in ("blobs_deleted", "bytes_deleted", "aggregate_rows_deleted", "ledger_rows_deleted"):
        assert report[counted] == 0
