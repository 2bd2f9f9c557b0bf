"""Delivery (pure decisions, injected transport and clock): spooled batches are posted oldest first,
each until the service answers 2xx, and removed from the spool only then.

- 2xx: delivered; the next batch follows at once.
- 400, 413, 414, 415, 422: refused for good, for what the batch holds (a bad log type, a body too
  large, ...): retrying the same bytes cannot help, so the batch is moved to `spool/rejected/` with an
  error log, and the next batch follows.
- anything else (no answer, 401, 403, 408, 429, 5xx, any other status): the service cannot take it
  now. Every batch older than the retry window (2 hours by default) is dropped with a logged count;
  the rest wait, in order, until the next attempt: after Retry-After when the service sent one (429,
  503; at most a day), else after the retry interval (8 minutes by default). Calls before then send
  nothing. 401 and 403 refuse the agent's credentials, not the batch (a rotated shared key, an expired
  certificate, a clock more than 15 minutes off): they are logged as errors saying what to check, and
  the batches are kept for when that is fixed.

Nothing here sleeps: `deliver()` says when it wants to be called again, and the caller waits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import Enum

import orjson

from shared.agentclient.auth import Authenticator
from shared.agentclient.batching import TIME_GENERATED_FIELD
from shared.agentclient.config import RetryPolicy
from shared.agentclient.spool import BatchCount, Spool, SpooledBatch
from shared.agentclient.transport import HttpAnswer, Transport
from shared.ingest import JSON_CONTENT_TYPE

# A Retry-After of 0 (or a date in the past) must not turn into a busy loop.
MIN_RETRY_AFTER = timedelta(seconds=1)
# The longest wait the service asks for is to the next UTC midnight (DailyCapExceeded). A longer one is
# a broken header, and taken as it is it would overflow the date arithmetic on every attempt.
MAX_RETRY_AFTER = timedelta(days=1)
# Refused for what the batch holds: the same bytes would be refused again.
CONTENT_REFUSALS = frozenset({400, 413, 414, 415, 422})
# Refused for who sends it: fixing the credentials or the clock on this machine makes the same bytes
# acceptable, so the batches are kept and retried like 5xx, but each attempt says what to check.
CREDENTIAL_REFUSALS = frozenset({401, 403})
CREDENTIAL_HINT = (
    "the service does not accept this agent's credentials: check whether the shared key was rotated, "
    "the agent certificate expired or the agent was revoked (enroll again), and that the clock is right"
)
OTHER_WORKSPACE = "other-workspace"

log = logging.getLogger("sluice.agent.sender")


class Verdict(Enum):
    DELIVERED = "delivered"
    REFUSED = "refused"
    RETRY = "retry"


def verdict(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in CONTENT_REFUSALS:
        return Verdict.REFUSED
    return Verdict.RETRY


def retry_after(answer: HttpAnswer, *, now: datetime) -> timedelta | None:
    """The wait the answer asks for (delay-seconds or an HTTP date), between MIN_RETRY_AFTER and
    MAX_RETRY_AFTER."""
    value = answer.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        # float, not int: any number of digits converts (a huge one to inf), and is clamped below.
        wait = timedelta(seconds=min(float(value), MAX_RETRY_AFTER.total_seconds()))
    else:
        try:
            wait = parsedate_to_datetime(value).astimezone(UTC) - now
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(wait, MIN_RETRY_AFTER), MAX_RETRY_AFTER)


@dataclass(frozen=True, slots=True)
class RoundReport:
    delivered: BatchCount = field(default_factory=BatchCount)  # batches and records the service took
    refused: BatchCount = field(default_factory=BatchCount)  # moved to rejected/
    expired: BatchCount = field(default_factory=BatchCount)  # dropped: older than the retry window
    retry_at: datetime | None = None  # None: nothing is left to send

    def __add__(self, later: RoundReport) -> RoundReport:
        """Two rounds in a row: their counts, and what the later one says about waiting."""
        return RoundReport(
            delivered=self.delivered + later.delivered,
            refused=self.refused + later.refused,
            expired=self.expired + later.expired,
            retry_at=later.retry_at,
        )


class Sender:
    def __init__(
        self,
        *,
        spool: Spool,
        transport: Transport,
        auth: Authenticator,
        workspace_id: str,
        retry: RetryPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self._spool = spool
        self._transport = transport
        self._auth = auth
        self._workspace_id = workspace_id
        self._retry = retry
        self._clock = clock
        self._retry_at: datetime | None = None

    def deliver(self) -> RoundReport:
        """Sends until the spool is empty or a batch must wait; sends nothing before a pending retry."""
        if self._retry_at is not None and self._clock() < self._retry_at:
            return RoundReport(retry_at=self._retry_at)
        self._retry_at = None
        delivered = refused = BatchCount()
        while (batch := self._spool.oldest()) is not None:
            if batch.workspace_id != self._workspace_id:
                # Taken before the agent was enrolled elsewhere: never send a tenant's data to another.
                refused += self._refuse(batch, OTHER_WORKSPACE, f"it is for workspace {batch.workspace_id}")
                continue
            try:
                body = self._spool.body(batch)
            except FileNotFoundError:  # dropped meanwhile (cap)
                continue
            now = self._clock()
            try:
                answer = self._transport.post(self._auth.url, body, self._headers(batch, body, now))
            except OSError as error:
                return self._wait(batch, f"{type(error).__name__}: {error}", None, delivered, refused)
            match verdict(answer.status):
                case Verdict.DELIVERED:
                    self._spool.remove(batch)
                    delivered += BatchCount(1, batch.records)
                    log.debug("delivered %s (%d records of %s)", batch.name, batch.records, batch.log_type)
                case Verdict.REFUSED:
                    refused += self._refuse(batch, str(answer.status), _describe(answer))
                case Verdict.RETRY:
                    level, reason = _failed_attempt(answer)
                    wait = retry_after(answer, now=now)
                    return self._wait(batch, reason, wait, delivered, refused, level=level)
        return RoundReport(delivered=delivered, refused=refused)

    def _headers(self, batch: SpooledBatch, body: bytes, now: datetime) -> dict[str, str]:
        return {
            "Content-Type": JSON_CONTENT_TYPE,
            "Content-Encoding": "gzip",
            "Log-Type": batch.log_type,
            "time-generated-field": TIME_GENERATED_FIELD,
            **self._auth.headers(body, now=now),
        }

    def _refuse(self, batch: SpooledBatch, reason: str, detail: str) -> BatchCount:
        target = self._spool.reject(batch, reason)
        log.error(
            "refused for good: %s (%d records of %s): %s; moved to %s",
            batch.name,
            batch.records,
            batch.log_type,
            detail,
            target,
        )
        return BatchCount(1, batch.records)

    def _wait(
        self,
        batch: SpooledBatch,
        reason: str,
        requested: timedelta | None,
        delivered: BatchCount,
        refused: BatchCount,
        *,
        level: int = logging.WARNING,
    ) -> RoundReport:
        now = self._clock()
        expired = self._spool.drop_older_than(now - self._retry.window)
        if expired.batches:
            log.warning(
                "dropped %d batches (%d records) older than the retry window of %s",
                expired.batches,
                expired.records,
                self._retry.window,
            )
        if self._spool.oldest() is None:
            return RoundReport(delivered=delivered, refused=refused, expired=expired)
        self._retry_at = now + (requested or self._retry.interval)
        log.log(
            level,
            "could not deliver %s (%d records of %s): %s; next attempt at %s",
            batch.name,
            batch.records,
            batch.log_type,
            reason,
            self._retry_at.isoformat(timespec="seconds"),
        )
        return RoundReport(delivered=delivered, refused=refused, expired=expired, retry_at=self._retry_at)


def _failed_attempt(answer: HttpAnswer) -> tuple[int, str]:
    """How loud an answer to retry is logged, and why: a refused credential needs someone to act."""
    if answer.status in CREDENTIAL_REFUSALS:
        return logging.ERROR, f"{_describe(answer)}; {CREDENTIAL_HINT}"
    return logging.WARNING, _describe(answer)


def _describe(answer: HttpAnswer) -> str:
    """`503 ServiceUnavailable: message`, from the Data Collector API's error body and header."""
    try:
        document = orjson.loads(answer.body) if answer.body else {}
    except orjson.JSONDecodeError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    code = answer.headers.get("x-ms-error-code") or document.get("Error") or ""
    message = document.get("Message") or answer.body[:200].decode("utf-8", "replace")
    return f"{answer.status} {code}: {message}".strip()
