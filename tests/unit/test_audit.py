"""The audit core with an in-memory store: the hash chain, what verify_chain reports for each kind of
tampering, the secret guard, and the authentication-failure recorder's aggregation and isolation."""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from shared.audit import (
    ANONYMOUS,
    GENESIS_HASH,
    AuditAction,
    AuditEntry,
    AuditHead,
    AuditLog,
    AuthFailureReason,
    AuthFailureRecorder,
    ProblemKind,
    verify_chain,
)
from shared.cli.common import operator_actor
from shared.errors import StorageUnavailable
from tests.unit.fakes import MemoryAuditStore

NOW = datetime(2026, 11, 22, 13, 37, 5, 123456, tzinfo=UTC)
WORKSPACE = "0b5a7c1e-3f7d-4c8e-9a52-6d1f2e3a4b5c"


class Clock:
    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def audit_log(store: MemoryAuditStore, clock: Clock | None = None, **options: Any) -> AuditLog:
    return AuditLog(store, clock=clock or Clock(), **options)


def chain_of(count: int) -> tuple[list[AuditEntry], AuditHead | None]:
    store = MemoryAuditStore()
    clock = Clock()
    log = audit_log(store, clock)
    for number in range(count):
        clock.advance(1)
        log.record(WORKSPACE, "operator:alice", AuditAction.WORKSPACE_SET_PLAN, plan="standard", n=number)
    chain = store.read(WORKSPACE)
    return chain.entries, chain.head


def found(problems: list[Any]) -> list[tuple[ProblemKind, int, int]]:
    return [(p.kind, p.first, p.last) for p in problems]


# -- the chain -----------------------------------------------------------------------------------------


def test_given_records_when_appended_then_entries_are_numbered_and_linked_from_genesis() -> None:
    entries, head = chain_of(3)

    assert [e.sequence for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert head is not None
    assert (head.sequence, head.hash) == (3, entries[-1].hash)


def test_given_an_entry_then_its_hash_is_sha256_of_sorted_key_orjson_of_every_field() -> None:
    entry = chain_of(1)[0][0]
    document = {
        "action": "workspace.set_plan",
        "actor": "operator:alice",
        "details": {"n": 0, "plan": "standard"},
        "prev_hash": GENESIS_HASH,
        "sequence": 1,
        "time": "2026-11-22T13:37:06.123456Z",
        "workspace_id": WORKSPACE,
    }
    assert entry.hash == hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def test_given_the_same_instant_in_another_zone_then_the_hash_is_the_same() -> None:
    entry = chain_of(1)[0][0]
    elsewhere = replace(entry, time=entry.time.astimezone(timezone(timedelta(hours=5, minutes=30))))
    assert elsewhere.expected_hash() == entry.hash


def test_given_upper_case_or_no_workspace_when_recording_then_canonical_id_or_system_chain() -> None:
    store = MemoryAuditStore()
    log = audit_log(store)

    log.record(WORKSPACE.upper(), "operator:alice", AuditAction.WORKSPACE_CREATE, plan="free")
    log.record(None, "operator:alice", AuditAction.DCR_CREATE, dcr="dcr-1")

    assert store.read(WORKSPACE).entries[0].workspace_id == WORKSPACE
    assert store.read(None).entries[0].action == "dcr.create"


# -- verify_chain --------------------------------------------------------------------------------------


def test_given_an_intact_chain_when_verified_then_nothing_is_reported() -> None:
    entries, head = chain_of(5)
    assert verify_chain(entries, head) == []


def test_given_an_empty_chain_without_head_when_verified_then_nothing_is_reported() -> None:
    assert verify_chain([], None) == []


def test_given_an_edited_entry_when_verified_then_it_is_reported_by_sequence() -> None:
    entries, head = chain_of(5)
    entries[2] = replace(entries[2], details={"n": 2, "plan": "premium"})

    problems = verify_chain(entries, head)

    assert found(problems) == [(ProblemKind.EDITED, 3, 3)]
    assert str(problems[0]) == "edited: entry 3: its content does not match its hash"


def test_given_an_edited_entry_with_a_recomputed_hash_then_the_broken_link_is_reported() -> None:
    entries, head = chain_of(5)
    forged = replace(entries[2], actor="operator:mallory")
    entries[2] = replace(forged, hash=forged.expected_hash())

    assert found(verify_chain(entries, head)) == [(ProblemKind.EDITED, 3, 4)]


def test_given_a_rewritten_last_entry_then_the_head_hash_gives_it_away() -> None:
    entries, head = chain_of(3)
    forged = replace(entries[2], actor="operator:mallory")
    entries[2] = replace(forged, hash=forged.expected_hash())

    assert found(verify_chain(entries, head)) == [(ProblemKind.EDITED, 3, 3)]


def test_given_a_removed_entry_when_verified_then_its_sequence_is_reported_missing() -> None:
    entries, head = chain_of(5)
    del entries[2]

    problems = verify_chain(entries, head)

    assert found(problems) == [(ProblemKind.REMOVED, 3, 3)]
    assert str(problems[0]) == "removed: entry 3: missing from the chain"


def test_given_the_first_entries_removed_then_they_are_reported_as_a_range() -> None:
    entries, head = chain_of(5)
    assert found(verify_chain(entries[2:], head)) == [(ProblemKind.REMOVED, 1, 2)]


def test_given_two_swapped_entries_when_verified_then_the_later_stored_one_is_reported() -> None:
    entries, head = chain_of(5)
    entries[2], entries[3] = entries[3], entries[2]

    problems = verify_chain(entries, head)

    assert found(problems) == [(ProblemKind.REORDERED, 3, 3)]
    assert str(problems[0]) == "reordered: entry 3: stored after entry 4"


def test_given_a_duplicated_entry_when_verified_then_it_is_reported() -> None:
    entries, head = chain_of(3)
    entries.insert(2, entries[1])
    assert [str(p) for p in verify_chain(entries, head)] == ["reordered: entry 2: stored a second time"]


def test_given_a_truncated_tail_when_verified_then_the_missing_sequences_are_reported() -> None:
    entries, head = chain_of(5)

    problems = verify_chain(entries[:3], head)

    assert found(problems) == [(ProblemKind.TRUNCATED, 4, 5)]
    assert str(problems[0]) == "truncated: entries 4-5: the head counts 5 entries but the chain ends at 3"


def test_given_every_entry_removed_but_the_head_then_all_are_reported_truncated() -> None:
    _, head = chain_of(2)
    assert found(verify_chain([], head)) == [(ProblemKind.TRUNCATED, 1, 2)]


def test_given_a_missing_head_when_verified_then_the_tail_cannot_be_vouched_for() -> None:
    entries, _ = chain_of(3)
    assert found(verify_chain(entries, None)) == [(ProblemKind.HEAD, 3, 3)]


def test_given_a_head_rolled_back_with_the_tail_kept_then_entries_beyond_it_are_reported() -> None:
    entries, _ = chain_of(4)
    stale = AuditHead(sequence=2, hash=entries[1].hash)
    assert found(verify_chain(entries, stale)) == [(ProblemKind.HEAD, 3, 4)]


# -- the secret guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        {"primary_key": "abc"},
        {"Secret": "abc"},
        {"access_token": "abc"},
        {"signature": "abc"},
        {"password": "abc"},
        {"request": {"Authorization": "SharedKey ws:sig"}},
        {"attempts": [{"client_assertion": "eyJ..."}]},
    ],
)
def test_given_secret_looking_detail_names_when_recording_then_refused_and_nothing_written(
    details: dict[str, Any],
) -> None:
    store = MemoryAuditStore()
    with pytest.raises(ValueError, match="never recorded"):
        audit_log(store).record(WORKSPACE, "operator:alice", AuditAction.KEY_ROTATE, **details)
    assert store.entries == {}


def test_given_details_that_are_not_json_when_recording_then_refused() -> None:
    with pytest.raises(ValueError, match="JSON"):
        audit_log(MemoryAuditStore()).record(WORKSPACE, "a", AuditAction.KEY_ROTATE, slot=object())


def test_given_oversized_details_when_recording_then_refused() -> None:
    with pytest.raises(ValueError, match="bytes"):
        audit_log(MemoryAuditStore()).record(WORKSPACE, "a", AuditAction.DCR_CREATE, rule="x" * 20_000)


def test_given_details_with_non_json_native_values_then_stored_as_json_so_the_hash_survives() -> None:
    store = MemoryAuditStore()
    entry = audit_log(store).record(WORKSPACE, "a", AuditAction.WORKSPACE_SET_PLAN, at=NOW, slots=("a", "b"))

    assert entry.details == {"at": "2026-11-22T13:37:05.123456+00:00", "slots": ["a", "b"]}
    assert verify_chain(*_chain(store)) == []


def _chain(store: MemoryAuditStore) -> tuple[list[AuditEntry], AuditHead | None]:
    chain = store.read(WORKSPACE)
    return chain.entries, chain.head


# -- concurrency ---------------------------------------------------------------------------------------


def test_given_a_lost_race_when_recording_then_rebuilt_on_the_new_head() -> None:
    store = MemoryAuditStore(races_to_lose=2)

    entry = audit_log(store).record(WORKSPACE, "a", AuditAction.AGENT_REVOKE, agent_id="agent-1")

    assert entry.sequence == 1
    assert len(store.entries[WORKSPACE]) == 1


def test_given_a_chain_that_stays_contended_when_recording_then_storage_unavailable() -> None:
    store = MemoryAuditStore(races_to_lose=3)
    with pytest.raises(StorageUnavailable):
        audit_log(store, max_attempts=3).record(WORKSPACE, "a", AuditAction.AGENT_REVOKE, agent_id="a1")
    assert store.entries == {}


# -- authentication failures ---------------------------------------------------------------------------


def recorder(store: MemoryAuditStore, clock: Clock, **options: Any) -> AuthFailureRecorder:
    return AuthFailureRecorder(audit_log(store, clock), clock=clock, **options)


def details_of(store: MemoryAuditStore, workspace_id: str | None = WORKSPACE) -> list[dict[str, Any]]:
    return [e.details for e in store.entries.get(workspace_id, [])]


def test_given_a_burst_of_failures_then_one_entry_per_window_with_counts_per_reason() -> None:
    store, clock = MemoryAuditStore(), Clock()
    failures = recorder(store, clock)

    failures.record(WORKSPACE, AuthFailureReason.BAD_SIGNATURE)  # first after quiet: written now
    for seconds, reason in [(10, AuthFailureReason.BAD_SIGNATURE), (20, AuthFailureReason.BAD_DATE)]:
        clock.now = NOW + timedelta(seconds=seconds)
        failures.record(WORKSPACE, reason)
    assert len(details_of(store)) == 1

    clock.now = NOW + timedelta(seconds=60)
    failures.record(WORKSPACE, AuthFailureReason.BAD_SIGNATURE)

    first, second = details_of(store)
    assert first["failures"] == 1
    assert second == {
        "failures": 3,
        "reasons": [{"reason": "bad_date", "count": 1}, {"reason": "bad_signature", "count": 2}],
        "first_at": (NOW + timedelta(seconds=10)).isoformat(),
        "last_at": (NOW + timedelta(seconds=60)).isoformat(),
    }
    assert {e.actor for e in store.entries[WORKSPACE]} == {ANONYMOUS}
    assert {e.action for e in store.entries[WORKSPACE]} == {"auth.failures"}


def test_given_failures_in_two_workspaces_then_each_has_its_own_window() -> None:
    store, clock = MemoryAuditStore(), Clock()
    failures = recorder(store, clock)
    other = str(uuid.uuid4())

    failures.record(WORKSPACE, AuthFailureReason.BAD_SIGNATURE)
    failures.record(other, AuthFailureReason.REVOKED_AGENT)
    failures.record(None, AuthFailureReason.UNKNOWN_WORKSPACE)

    assert len(details_of(store)) == 1
    assert details_of(store, other)[0]["reasons"] == [{"reason": "revoked_agent", "count": 1}]
    assert details_of(store, None)[0]["reasons"] == [{"reason": "unknown_workspace", "count": 1}]


def test_given_pending_failures_when_flushed_then_written_whatever_the_window() -> None:
    store, clock = MemoryAuditStore(), Clock()
    failures = recorder(store, clock)
    failures.record(WORKSPACE, AuthFailureReason.BAD_TOKEN)
    clock.advance(5)
    failures.record(WORKSPACE, AuthFailureReason.BAD_TOKEN)

    failures.flush()
    failures.flush()  # nothing pending: nothing written

    assert [d["failures"] for d in details_of(store)] == [1, 1]


def test_given_something_that_is_not_a_workspace_id_then_only_the_system_chain_counts_it() -> None:
    store, clock = MemoryAuditStore(), Clock()

    recorder(store, clock).record("../../etc/passwd", AuthFailureReason.UNKNOWN_WORKSPACE)

    assert list(store.entries) == [None]
    assert details_of(store, None)[0]["reasons"] == [{"reason": "unknown_workspace", "count": 1}]


def test_given_audit_storage_failing_then_failures_are_swallowed_logged_and_counted_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryAuditStore(error=StorageUnavailable("Storage is unreachable.")), Clock()
    failures = recorder(store, clock)

    with caplog.at_level(logging.ERROR, logger="sluice.audit"):
        failures.record(WORKSPACE, AuthFailureReason.BAD_SIGNATURE)  # does not raise
        failures.flush()
    assert "could not write 1 authentication failures" in caplog.text
    assert store.entries == {}

    store.error = None
    clock.advance(60)
    failures.record(WORKSPACE, AuthFailureReason.BAD_DATE)

    assert details_of(store)[0]["reasons"] == [
        {"reason": "bad_date", "count": 1},
        {"reason": "bad_signature", "count": 1},
    ]


def test_given_an_executor_then_recording_returns_before_the_audit_write() -> None:
    gate = threading.Event()
    store, clock = MemoryAuditStore(gate=gate), Clock()
    executor = ThreadPoolExecutor(max_workers=1)
    failures = recorder(store, clock, executor=executor)

    failures.record(WORKSPACE, AuthFailureReason.BAD_SIGNATURE)  # would hang if it waited on storage

    assert store.entries == {}
    gate.set()
    executor.shutdown(wait=True)
    assert details_of(store)[0]["failures"] == 1


def test_given_an_operator_login_then_cli_entries_name_it_as_the_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGNAME", "alice")
    assert operator_actor() == "operator:alice"
