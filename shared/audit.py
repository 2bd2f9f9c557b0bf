"""The audit log: an append-only, hash-chained record of who did what, one chain per workspace plus a
`system` chain for actions that concern no single workspace.

Each entry carries its sequence number (1, 2, ...), time, actor, action, workspace id and details, the
hash of the entry before it (`prev_hash`, 64 zeros for the first) and its own `hash`: the SHA-256 of
the canonical encoding (orjson, sorted keys) of all of those. A head record holds the latest sequence
and hash and moves in the same atomic write as each new entry (see AuditStore), so `verify_chain`
finds an edited, removed, reordered or truncated entry by its sequence number.

What the chain cannot show: anyone who can write the store can also rewrite an entry and every entry
after it with fresh hashes, head included, or delete a whole chain. Detecting that needs the head
hashes kept somewhere that writer cannot reach.

Details never carry secrets: names that look like keys, tokens, signatures or passwords are refused.

Audit entries are never purged with customer data: retention and workspace deletion must not touch
the audit store (the `audit` table), so the trail outlives the data it describes.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from time import sleep
from typing import Any, Protocol

import orjson

from shared.errors import InvalidCustomerId, StorageUnavailable
from shared.ids import parse_workspace_id
from shared.telemetry import workspace_log

GENESIS_HASH = "0" * 64
SYSTEM_LOG = "system"
ANONYMOUS = "anonymous"  # the actor of authentication failures: by definition nobody we know
# Detail names containing any of these are refused, at any depth: a guard against a call site that
# hands over a credential by accident. Over-matching (`key_slot`) is the safe side; name it `slot`.
SECRET_NAME_FRAGMENTS = (
    "key",
    "secret",
    "token",
    "signature",
    "password",
    "credential",
    "authorization",
    "assertion",
)
# A Table string property holds at most 64 KiB; audit details are a few fields, so stay far below.
MAX_DETAILS_BYTES = 16 * 1024
MAX_APPEND_ATTEMPTS = 20
APPEND_BACKOFF_SECONDS = 0.02
AUTH_FAILURE_WINDOW = timedelta(seconds=60)

log = logging.getLogger("sluice.audit")


class AuditAction(StrEnum):
    """Every audited action; a new kind of event is added here, so the catalogue stays in one place."""

    WORKSPACE_CREATE = "workspace.create"
    WORKSPACE_SET_PLAN = "workspace.set_plan"
    WORKSPACE_DELETE = "workspace.delete"  # ingestion stops; data removed after the grace period
    WORKSPACE_RESTORE = "workspace.restore"  # a deletion undone within the grace period
    WORKSPACE_REMOVE = "workspace.remove"  # the grace period is over: container, rows, keys, agents gone
    KEY_ROTATE = "workspace.rotate_key"
    AGENT_REGISTER = "agent.register"
    AGENT_REVOKE = "agent.revoke"
    DCR_CREATE = "dcr.create"
    READER_GRANT = "reader.grant"  # a principal may read the workspace through the query API
    READER_REVOKE = "reader.revoke"
    DIAG_SOURCE_ADD = "diag.add_source"
    DIAG_SOURCE_REMOVE = "diag.remove_source"
    RETENTION_PURGE = "retention.purge"
    QUARANTINE = "blob.quarantine"  # a raw blob that can never be processed, moved to quarantine/
    AUTH_FAILURES = "auth.failures"


class AuthFailureReason(StrEnum):
    """Why a request was not authenticated: a fixed code, never text taken from the request."""

    UNKNOWN_WORKSPACE = "unknown_workspace"
    BAD_SIGNATURE = "bad_signature"
    BAD_DATE = "bad_date"
    BAD_ENROLLMENT_KEY = "bad_enrollment_key"
    UNKNOWN_CERTIFICATE = "unknown_certificate"
    EXPIRED_CERTIFICATE = "expired_certificate"
    REVOKED_AGENT = "revoked_agent"
    BAD_ASSERTION = "bad_assertion"
    REPLAYED_ASSERTION = "replayed_assertion"
    BAD_TOKEN = "bad_token"  # noqa: S105 - a reason code, not a token
    BAD_READER_KEY = "bad_reader_key"
    NOT_A_READER = "not_a_reader"  # a valid token without the reader role or the workspace's grant


def log_name(workspace_id: str | None) -> str:
    """The chain an entry belongs to: the workspace id, or `system` for None."""
    return SYSTEM_LOG if workspace_id is None else workspace_id


def workspace_of_log(name: str) -> str | None:
    return None if name == SYSTEM_LOG else name


@dataclass(frozen=True, slots=True)
class AuditEntry:
    workspace_id: str | None  # None: the system chain
    sequence: int
    time: datetime
    actor: str
    action: str
    details: dict[str, Any]  # JSON values only (see check_details)
    prev_hash: str
    hash: str

    def expected_hash(self) -> str:
        document = {
            "workspace_id": self.workspace_id,
            "sequence": self.sequence,
            "time": canonical_time(self.time),
            "actor": self.actor,
            "action": self.action,
            "details": self.details,
            "prev_hash": self.prev_hash,
        }
        return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The latest entry of a chain. `version` is the store's concurrency token (an ETag), opaque here."""

    sequence: int
    hash: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class AuditChain:
    entries: list[AuditEntry]  # in storage order
    head: AuditHead | None


def canonical_time(moment: datetime) -> str:
    """Fixed-width UTC with microseconds: the same instant always hashes the same, whatever its zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """The details as plain JSON values (what a store gives back, so the hash survives the round trip),
    or ValueError for a secret-looking name, a value that is not JSON, or details too large."""
    _refuse_secret_names(details)
    try:
        encoded = orjson.dumps(details, option=orjson.OPT_SORT_KEYS)
    except TypeError as error:
        raise ValueError(f"Audit details must be JSON values: {error}") from None
    if len(encoded) > MAX_DETAILS_BYTES:
        raise ValueError(f"Audit details are {len(encoded)} bytes; at most {MAX_DETAILS_BYTES} are kept.")
    normalised: dict[str, Any] = orjson.loads(encoded)
    return normalised


def _refuse_secret_names(value: Any) -> None:
    if isinstance(value, Mapping):
        for name, item in value.items():
            lowered = str(name).lower()
            if any(fragment in lowered for fragment in SECRET_NAME_FRAGMENTS):
                raise ValueError(
                    f"Audit details may not carry {name!r}: keys, tokens, signatures and passwords are "
                    "never recorded."
                )
            _refuse_secret_names(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_secret_names(item)


def chain_entry(
    head: AuditHead | None,
    *,
    workspace_id: str | None,
    time: datetime,
    actor: str,
    action: str,
    details: dict[str, Any],
) -> AuditEntry:
    """The entry that follows `head` (the first one when there is no head yet)."""
    unhashed = AuditEntry(
        workspace_id=workspace_id,
        sequence=1 if head is None else head.sequence + 1,
        time=time,
        actor=actor,
        action=action,
        details=details,
        prev_hash=GENESIS_HASH if head is None else head.hash,
        hash="",
    )
    return replace(unhashed, hash=unhashed.expected_hash())


# -- verification --------------------------------------------------------------------------------------


class ProblemKind(StrEnum):
    EDITED = "edited"  # content does not match its hash, or a link to it is broken
    REMOVED = "removed"  # sequence numbers missing inside the chain
    REORDERED = "reordered"  # stored after a later entry (or twice)
    TRUNCATED = "truncated"  # the head counts more entries than there are
    HEAD = "head"  # the head is missing or behind the entries


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    first: int  # the sequence numbers concerned, first..last inclusive
    last: int
    message: str

    def __str__(self) -> str:
        where = f"entry {self.first}" if self.first == self.last else f"entries {self.first}-{self.last}"
        return f"{self.kind}: {where}: {self.message}"


def verify_chain(entries: Sequence[AuditEntry], head: AuditHead | None) -> list[Problem]:
    """Every inconsistency of one chain, given its entries in storage order and its head; [] if intact."""
    problems: list[Problem] = []
    highest = 0
    for entry in entries:
        number = entry.sequence
        if entry.hash != entry.expected_hash():
            problems.append(
                Problem(ProblemKind.EDITED, number, number, "its content does not match its hash")
            )
        if number <= highest:
            where = "a second time" if number == highest else f"after entry {highest}"
            problems.append(Problem(ProblemKind.REORDERED, number, number, f"stored {where}"))
        highest = max(highest, number)

    previous: AuditEntry | None = None
    for entry in sorted(entries, key=lambda e: e.sequence):
        if previous is not None and entry.sequence == previous.sequence:
            continue  # a duplicate, reported above
        expected = 1 if previous is None else previous.sequence + 1
        if entry.sequence > expected:
            problems.append(
                Problem(ProblemKind.REMOVED, expected, entry.sequence - 1, "missing from the chain")
            )
        elif previous is None and entry.prev_hash != GENESIS_HASH:
            problems.append(
                Problem(ProblemKind.EDITED, entry.sequence, entry.sequence, "does not start the chain")
            )
        elif previous is not None and entry.prev_hash != previous.hash:
            problems.append(
                Problem(
                    ProblemKind.EDITED,
                    previous.sequence,
                    entry.sequence,
                    f"entry {entry.sequence} does not link to entry {previous.sequence}: one was rewritten",
                )
            )
        previous = entry

    problems.extend(_head_problems(previous, head))
    return problems


def _head_problems(last: AuditEntry | None, head: AuditHead | None) -> list[Problem]:
    count = 0 if last is None else last.sequence
    if head is None:
        if last is None:
            return []
        return [
            Problem(ProblemKind.HEAD, count, count, "the head record is missing: later entries may be gone")
        ]
    if head.sequence > count:
        message = f"the head counts {head.sequence} entries but the chain ends at {count}"
        return [Problem(ProblemKind.TRUNCATED, count + 1, head.sequence, message)]
    if head.sequence < count:
        message = f"stored beyond the head (entry {head.sequence}): the head was rolled back"
        return [Problem(ProblemKind.HEAD, head.sequence + 1, count, message)]
    if last is not None and head.hash != last.hash:
        return [Problem(ProblemKind.EDITED, count, count, "does not match the head's hash")]
    return []


# -- the port and the service --------------------------------------------------------------------------


class AuditStore(Protocol):
    def head(self, workspace_id: str | None) -> AuditHead | None:
        """The chain's head, None while the chain is empty."""

    def try_append(self, entry: AuditEntry, *, after: AuditHead | None) -> bool:
        """Stores the entry and moves the head to it in one atomic write, only if the head is still
        `after` (None: no head yet). False, with nothing written, when another writer got there first."""

    def read(self, workspace_id: str | None) -> AuditChain: ...

    def workspaces(self) -> list[str | None]:
        """Every chain that holds anything (None: the system chain)."""


class AuditLog:
    """Appends to the chains; concurrent writers, in this process or others, never fork a chain: each
    append is conditional on the head it was built on, and a writer that lost the race rebuilds."""

    def __init__(
        self,
        store: AuditStore,
        *,
        clock: Callable[[], datetime],
        max_attempts: int = MAX_APPEND_ATTEMPTS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_attempts = max_attempts

    def record(
        self, workspace_id: str | None, actor: str, action: AuditAction, /, **details: Any
    ) -> AuditEntry:
        """Appends one entry to the workspace's chain (None: the system chain) and returns it. Raises
        ValueError for secret-looking or non-JSON details, StorageUnavailable when storage fails or the
        chain stays contended for every attempt."""
        workspace = None if workspace_id is None else parse_workspace_id(workspace_id)
        clean = check_details(details)
        for attempt in range(1, self._max_attempts + 1):
            head = self._store.head(workspace)
            entry = chain_entry(
                head, workspace_id=workspace, time=self._clock(), actor=actor, action=action, details=clean
            )
            if self._store.try_append(entry, after=head):
                return entry
            # Random backoff, growing per attempt, so contending writers stop colliding in lockstep.
            sleep(random.uniform(0, APPEND_BACKOFF_SECONDS * attempt))  # noqa: S311 - jitter, no secret
        raise StorageUnavailable(
            f"The {log_name(workspace)} audit log stayed busy for {self._max_attempts} attempts."
        )

    def read(self, workspace_id: str | None) -> AuditChain:
        return self._store.read(workspace_id)

    def workspaces(self) -> list[str | None]:
        return self._store.workspaces()


# -- authentication failures ---------------------------------------------------------------------------


@dataclass(slots=True)
class _PendingFailures:
    first_at: datetime
    last_at: datetime
    reasons: Counter[str] = field(default_factory=Counter)


class AuthFailureRecorder:
    """Counts authentication failures in process and writes at most one aggregated `auth.failures`
    entry per chain per window: the first failure after a quiet window is written with everything
    counted since the last write; `flush()` writes what is pending now (before the process goes).

    Safe on the request path: `record` only counts under a lock; the write runs on `executor` (inline
    when None) and a storage error is logged, never raised, and its counts are kept for the next write.

    Only the workspace id and a reason code are recorded. Pass a workspace id only once the workspace
    is known to exist, else None (the failure goes to the system chain): ids invented by a caller must
    neither open chains nor grow the counters."""

    def __init__(
        self,
        audit: AuditLog,
        *,
        clock: Callable[[], datetime],
        window: timedelta = AUTH_FAILURE_WINDOW,
        executor: Executor | None = None,
    ) -> None:
        self._audit = audit
        self._clock = clock
        self._window = window
        self._executor = executor
        self._pending: dict[str | None, _PendingFailures] = {}
        self._last_write: dict[str | None, datetime] = {}
        self._in_flight: set[Future[None]] = set()
        self._lock = threading.Lock()

    def record(self, workspace_id: str | None, reason: AuthFailureReason) -> None:
        workspace = _canonical_or_none(workspace_id)
        now = self._clock()
        with self._lock:
            pending = self._pending.setdefault(workspace, _PendingFailures(first_at=now, last_at=now))
            pending.last_at = now
            pending.reasons[reason.value] += 1
            last_write = self._last_write.get(workspace)
            if last_write is not None and now - last_write < self._window:
                return
            del self._pending[workspace]
            self._last_write[workspace] = now
        if self._executor is None:
            self._write(workspace, pending)
            return
        future = self._executor.submit(self._write, workspace, pending)
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def flush(self) -> None:
        """Writes every pending aggregate now, whatever the window, after the writes already under way."""
        with self._lock:
            in_flight = list(self._in_flight)
        wait(in_flight)
        now = self._clock()
        with self._lock:
            due, self._pending = self._pending, {}
            self._last_write.update(dict.fromkeys(due, now))
        for workspace, pending in due.items():
            self._write(workspace, pending)

    def _write(self, workspace_id: str | None, pending: _PendingFailures) -> None:
        try:
            self._audit.record(
                workspace_id,
                ANONYMOUS,
                AuditAction.AUTH_FAILURES,
                failures=pending.reasons.total(),
                # A list, not a map: reason codes such as `bad_signature` would trip the secret guard.
                reasons=[{"reason": r, "count": n} for r, n in sorted(pending.reasons.items())],
                first_at=pending.first_at.isoformat(),
                last_at=pending.last_at.isoformat(),
            )
        except Exception:
            # Whatever went wrong (storage down, throttled, denied), a failed audit write must not
            # turn into a failed request; the counts go back to be written with the next aggregate.
            workspace_log(log, log_name(workspace_id)).exception(
                "could not write %d authentication failures to the audit log", pending.reasons.total()
            )
            self._restore(workspace_id, pending)

    def _restore(self, workspace_id: str | None, pending: _PendingFailures) -> None:
        with self._lock:
            current = self._pending.get(workspace_id)
            if current is None:
                self._pending[workspace_id] = pending
            else:
                current.first_at = min(current.first_at, pending.first_at)
                current.reasons.update(pending.reasons)


def _canonical_or_none(workspace_id: str | None) -> str | None:
    """Anything that is not a workspace GUID is never written: it counts against the system chain."""
    if workspace_id is None:
        return None
    try:
        return parse_workspace_id(workspace_id)
    except InvalidCustomerId:
        return None
