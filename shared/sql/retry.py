"""Retrying transient database failures in process, briefly, before giving the work back.

A transient failure (shared.errors.DatabaseUnavailable: the Database maps dropped connections, SQLSTATE
08xxx/40xxx, HYT00/HYT01 and Azure SQL's throttling, failover and deadlock errors to it) usually clears
within seconds, and the Database has already dropped the broken connection, so the next attempt runs on
a new one. A few attempts with growing delays are made here, within a bounded time; then the last error
is re-raised: the invocation fails and Event Grid redelivers the event with its own, longer backoff (and
dead-letters it in the end). A long outage, or a serverless database resuming, therefore costs neither a
worker held in a sleep loop nor a lost blob.

Only whole transactions are safe to repeat. A commit whose acknowledgement was lost may have been
applied; processing a blob is still safe, because its ledger row turns the repeat into a duplicate."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from shared.errors import DatabaseUnavailable

T = TypeVar("T")

DEFAULT_ATTEMPTS = 4
DEFAULT_BASE_DELAY_SECONDS = 0.5
DEFAULT_MAX_DELAY_SECONDS = 8.0
# Operation time included: a statement that times out (HYT00) may take most of this by itself.
DEFAULT_MAX_TOTAL_SECONDS = 30.0

log = logging.getLogger("sluice.sql.retry")


def is_database_unavailable(error: BaseException) -> bool:
    return isinstance(error, DatabaseUnavailable)


def backoff_delay(attempt: int, *, base_delay: float, max_delay: float, jitter: float) -> float:
    """The wait after failed attempt `attempt` (1-based): base_delay doubled per attempt, capped at
    max_delay, with "equal jitter" (half fixed, half random, `jitter` in [0, 1)): instances that failed
    together spread their retries out, yet below the cap each wait is at least as long as the one before
    (attempt n waits at most its ceiling c, attempt n+1 at least c)."""
    ceiling = min(max_delay, base_delay * 2.0 ** (attempt - 1))
    return ceiling / 2 + ceiling / 2 * jitter


def call_with_retries(
    operation: Callable[[], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY_SECONDS,
    max_delay: float = DEFAULT_MAX_DELAY_SECONDS,
    max_total_seconds: float = DEFAULT_MAX_TOTAL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,  # spreading retries out, not a secret
    is_transient: Callable[[BaseException], bool] = is_database_unavailable,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
) -> T:
    """operation's result; a transient error is retried up to `attempts` calls in all, and only while
    the next wait still ends within `max_total_seconds` of the first call. Anything else, and the last
    transient error, is raised as is. Pass a workspace_log adapter as `logger` where the work has one."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    started = clock()
    attempt = 1
    while True:
        try:
            return operation()
        except Exception as error:
            if not is_transient(error) or attempt >= attempts:
                raise
            delay = backoff_delay(attempt, base_delay=base_delay, max_delay=max_delay, jitter=jitter())
            if clock() - started + delay > max_total_seconds:
                logger.warning(
                    "database still unavailable after attempt %d of %d; no time left to retry: %s",
                    attempt,
                    attempts,
                    error,
                )
                raise
            logger.warning(
                "database unavailable on attempt %d of %d; retrying in %.2f s: %s",
                attempt,
                attempts,
                delay,
                error,
            )
            sleep(delay)
        attempt += 1
