"""The audit log on Azurite's Table service: concurrent appenders make one unbroken chain, and
tampering done directly through the azure-data-tables client is reported by `sluice audit verify`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.audit import AuditAction, AuditEntry, AuditHead, AuditLog, ProblemKind, verify_chain
from shared.audit_store import HEAD_ROW_KEY, TableAuditStore, row_key
from shared.cli import main
from shared.runtime import utc_now
from tests.support.concurrency import run_together
from tests.support.runtime import Runtime

pytestmark = pytest.mark.integration

WRITERS = 8
RECORDS_PER_WRITER = 5


@pytest.fixture
def table_name(azurite_connection_string: str) -> Iterator[str]:
    """A table of the test's own, so listing every chain sees only what the test wrote."""
    name = f"audit{uuid.uuid4().hex}"
    yield name
    TableServiceClient.from_connection_string(azurite_connection_string).delete_table(name)


class CountingStore(TableAuditStore):
    """Counts the appends that lost the race, to show the test really made writers collide."""

    def __init__(self, service: TableServiceClient, *, table_name: str, lost: list[int]) -> None:
        super().__init__(service, table_name=table_name)
        self._lost = lost

    def try_append(self, entry: AuditEntry, *, after: AuditHead | None) -> bool:
        appended = super().try_append(entry, after=after)
        if not appended:
            self._lost.append(entry.sequence)
        return appended


def new_log(connection_string: str, table_name: str) -> AuditLog:
    service = TableServiceClient.from_connection_string(connection_string)
    return AuditLog(TableAuditStore(service, table_name=table_name), clock=utc_now)


def test_given_concurrent_writers_when_appending_then_one_unbroken_chain_without_duplicates(
    azurite_connection_string: str, table_name: str
) -> None:
    workspace_id = str(uuid.uuid4())
    lost: list[int] = []

    def write(writer: int) -> None:
        # A client of its own per writer, as separate Functions instances would have.
        service = TableServiceClient.from_connection_string(azurite_connection_string)
        log = AuditLog(CountingStore(service, table_name=table_name, lost=lost), clock=utc_now)
        for number in range(RECORDS_PER_WRITER):
            log.record(workspace_id, f"writer-{writer}", AuditAction.AGENT_REGISTER, n=number)

    run_together(WRITERS, write)

    assert lost, "the writers never collided"
    chain = new_log(azurite_connection_string, table_name).read(workspace_id)
    total = WRITERS * RECORDS_PER_WRITER
    assert [e.sequence for e in chain.entries] == list(range(1, total + 1))
    assert sorted((e.actor, e.details["n"]) for e in chain.entries) == sorted(
        (f"writer-{w}", n) for w in range(WRITERS) for n in range(RECORDS_PER_WRITER)
    )
    assert chain.head is not None
    assert chain.head.sequence == total
    assert verify_chain(chain.entries, chain.head) == []


def test_given_an_entry_when_read_back_then_it_equals_what_was_recorded(
    azurite_connection_string: str, table_name: str
) -> None:
    log = new_log(azurite_connection_string, table_name)
    workspace_id = str(uuid.uuid4())

    recorded = log.record(workspace_id, "operator:alice", AuditAction.WORKSPACE_CREATE, plan="free", n=1.5)

    assert log.read(workspace_id).entries == [recorded]


def test_given_several_chains_one_headless_then_every_chain_is_listed_and_only_it_fails(
    azurite_connection_string: str, table_name: str
) -> None:
    log = new_log(azurite_connection_string, table_name)
    intact, damaged = str(uuid.uuid4()), str(uuid.uuid4())
    for workspace_id in (intact, damaged, None):
        log.record(workspace_id, "operator:alice", AuditAction.DCR_CREATE, dcr="dcr-1")
    TableServiceClient.from_connection_string(azurite_connection_string).get_table_client(
        table_name
    ).delete_entity(partition_key=damaged, row_key=HEAD_ROW_KEY)

    chains = log.workspaces()

    assert sorted(chains, key=str) == sorted([intact, damaged, None], key=str)
    problems = {w: verify_chain(log.read(w).entries, log.read(w).head) for w in chains}
    assert problems[intact] == problems[None] == []
    assert [p.kind for p in problems[damaged]] == [ProblemKind.HEAD]


# -- `sluice audit` on the runtime -----------------------------------------------------------------


@pytest.fixture
def audited(sqlite_runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Runtime:
    """The runtime's workspace with five audit entries; the CLI runs where no local.settings.json
    would add settings to the environment."""
    monkeypatch.chdir(tmp_path)
    for number in range(5):
        sqlite_runtime.services.audit.record(
            sqlite_runtime.workspace_id, "operator:alice", AuditAction.WORKSPACE_SET_PLAN, n=number
        )
    return sqlite_runtime


def audit_table(runtime: Runtime) -> TableClient:
    return TableServiceClient.from_connection_string(runtime.storage_connection_string).get_table_client(
        "audit"
    )


def edit_details(table: TableClient, workspace_id: str) -> None:
    entity = {"PartitionKey": workspace_id, "RowKey": row_key(3), "details": '{"n": 99}'}
    table.update_entity(entity, mode=UpdateMode.MERGE)


def break_details(table: TableClient, workspace_id: str) -> None:
    entity = {"PartitionKey": workspace_id, "RowKey": row_key(3), "details": "not json"}
    table.update_entity(entity, mode=UpdateMode.MERGE)


def delete_middle(table: TableClient, workspace_id: str) -> None:
    table.delete_entity(partition_key=workspace_id, row_key=row_key(3))


def delete_last(table: TableClient, workspace_id: str) -> None:
    table.delete_entity(partition_key=workspace_id, row_key=row_key(5))


def test_given_an_untouched_chain_when_verified_then_exit_0(
    audited: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--workspace", audited.workspace_id]) == 0
    assert f"{audited.workspace_id}: 5 entries, intact" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("tamper", "reported"),
    [
        (edit_details, "edited: entry 3: its content does not match its hash"),
        (break_details, "edited: entry 3: its content does not match its hash"),
        (delete_middle, "removed: entry 3: missing from the chain"),
        (delete_last, "truncated: entry 5: the head counts 5 entries but the chain ends at 4"),
    ],
    ids=["edit", "undecodable", "delete-middle", "delete-last"],
)
def test_given_tampering_through_the_tables_client_when_verified_then_reported_and_exit_1(
    audited: Runtime,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[TableClient, str], None],
    reported: str,
) -> None:
    tamper(audit_table(audited), audited.workspace_id)

    assert main(["audit", "verify", "--workspace", audited.workspace_id]) == 1
    out = capsys.readouterr().out
    assert f"  {reported}\n" in out
    assert "TAMPERED: 1 of 1 audit log(s) failed verification" in out

    # Without --workspace every chain is checked, this one among them.
    assert main(["audit", "verify"]) == 1
    assert f"  {reported}\n" in capsys.readouterr().out


def test_given_a_chain_when_listed_as_json_then_every_field_and_hash_is_shown(
    audited: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "list", "--workspace", audited.workspace_id, "--json"]) == 0

    rows = json.loads(capsys.readouterr().out)
    assert [r["sequence"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["details"] for r in rows] == [{"n": n} for n in range(5)]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert {r["action"] for r in rows} == {"workspace.set_plan"}


def test_given_the_system_chain_when_listed_as_a_table_then_hashes_are_left_out(
    audited: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    audited.services.audit.record(None, "operator:alice", AuditAction.DCR_CREATE, dcr="dcr-1")

    assert main(["audit", "list", "--workspace", "system"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["sequence", "time", "actor", "action", "details"]
    assert lines[-1].split()[2:] == ["operator:alice", "dcr.create", '{"dcr":', '"dcr-1"}']
