"""The agent put together with real I/O at the edges: HTTPS, the system clock, threads and sleeps.
`take` puts records in the spool, `deliver` empties it by the retry schedule, `send` does both as it
goes, `follow` tails a file into the spool while a delivery thread sends. One process delivers a
spool at a time (its sender lock); a Transport and a clock may be passed in instead of the real ones."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.agentclient.auth import (
    Authenticator,
    ClientAssertion,
    ClientCertificate,
    SharedKey,
    agent_logs_url,
)
from shared.agentclient.batching import Batch, BatchBuilder, batches, record_from_line
from shared.agentclient.config import AgentConfig, AuthMode
from shared.agentclient.enrollment import AgentCredentials, read_shared_key
from shared.agentclient.sender import RoundReport, Sender
from shared.agentclient.spool import BatchCount, Spool
from shared.agentclient.tail import CheckpointStore, FilePosition, LogFollower
from shared.agentclient.transport import HttpsTransport, Transport
from shared.rawstore import gzip_bytes

POLL_SECONDS = 1.0
# Under a steady trickle of lines a batch is closed after this long, even if it is not full.
FLUSH_SECONDS = 5.0
# How often a tail's delivery thread looks at the spool unasked: another process may have taken
# batches (`send`) that this one delivers, or may hold the spool's sender lock.
SPOOL_CHECK_SECONDS = 5.0
# After an unexpected failure of the delivery thread (a disk error), before it tries again.
DELIVERY_FAILURE_PAUSE_SECONDS = 30.0

log = logging.getLogger("sluice.agent")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], datetime] = utc_now,
        transport: Transport | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        options = config.options
        self.spool = Spool(config.state.spool_dir, max_bytes=options.spool_max_bytes, clock=clock)
        auth, client_certificate = _authentication(config)
        self.sender = Sender(
            spool=self.spool,
            transport=transport
            or HttpsTransport(
                ca_file=config.identity.ca_file,
                timeout_seconds=options.request_timeout_seconds,
                client_certificate=client_certificate,
            ),
            auth=auth,
            workspace_id=config.identity.workspace_id,
            retry=options.retry,
            clock=clock,
        )

    def take(self, records: Iterable[dict[str, Any]], *, log_type: str) -> BatchCount:
        """Spools the records in batches, for whichever process delivers this spool; returns what was
        taken (a batch larger than the whole cap is not)."""
        taken = BatchCount()
        for batch in batches(records, max_bytes=self.config.options.batch_max_bytes):
            if self._take(batch, log_type):
                taken += BatchCount(1, batch.records)
        return taken

    def send(
        self,
        records: Iterable[dict[str, Any]],
        *,
        log_type: str,
        wait: bool,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RoundReport | None:
        """Spools the records and sends each batch as soon as it is taken, so a long input does not
        fill the spool while the service takes it; then delivers the rest as `deliver` does. None:
        another process delivers this spool, and the records are left to it."""
        lock = self.spool.sender_lock()
        if not lock.acquire():
            self.take(records, log_type=log_type)
            return None
        try:
            total = RoundReport()
            for batch in batches(records, max_bytes=self.config.options.batch_max_bytes):
                self._take(batch, log_type)
                total += self.sender.deliver()  # while a retry is pending this sends nothing
            return total + self._deliver_by_schedule(wait, sleep)
        finally:
            lock.release()

    def deliver(self, *, wait: bool, sleep: Callable[[float], None] = time.sleep) -> RoundReport | None:
        """Sends the spool; with `wait`, keeps to the retry schedule until nothing is left to send.
        None: another process is delivering this spool."""
        lock = self.spool.sender_lock()
        if not lock.acquire():
            return None
        try:
            return self._deliver_by_schedule(wait, sleep)
        finally:
            lock.release()

    def _deliver_by_schedule(self, wait: bool, sleep: Callable[[float], None]) -> RoundReport:
        total = RoundReport()
        while True:
            total += self.sender.deliver()
            if total.retry_at is None or not wait:
                return total
            sleep(max(0.0, (total.retry_at - self._clock()).total_seconds()))

    def follow(
        self,
        path: Path,
        *,
        log_type: str,
        stop: threading.Event,
        from_beginning: bool = False,
        poll_seconds: float = POLL_SECONDS,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        """Tails `path` into the spool until `stop` is set, while a thread delivers; on stop, what was
        read is spooled and checkpointed before returning."""
        checkpoints = CheckpointStore(self.config.state.checkpoint_dir)
        checkpoint = checkpoints.load(path)
        checkpointed = checkpoint is not None
        follower = LogFollower(path, checkpoint=checkpoint, from_beginning=from_beginning)
        builder: BatchBuilder[FilePosition] = BatchBuilder(self.config.options.batch_max_bytes)
        wake = threading.Event()
        delivery = threading.Thread(
            target=self._deliver_until, args=(stop, wake), name="sluice-agent-delivery", daemon=True
        )
        delivery.start()
        computer = socket.gethostname()

        def spool(batch: Batch[FilePosition]) -> None:
            nonlocal checkpointed
            self._take(batch, log_type)
            checkpoints.save(path, batch.mark)  # only now: the batch holding these lines is taken
            checkpointed = True
            wake.set()

        pending_since = 0.0
        try:
            while not stop.is_set():
                lines = follower.read()
                read_at = self._clock()
                for line in lines:
                    record = record_from_line(line.text, computer=computer, now=read_at)
                    if record is not None:
                        pending_since = pending_since if builder.pending else time.monotonic()
                        for batch in builder.add(record, line.position):
                            spool(batch)
                if not builder.pending and not checkpointed and follower.position is not None:
                    # Where following began (the end of the file): a restart goes on from here.
                    checkpoints.save(path, follower.position)
                    checkpointed = True
                if builder.pending and (not lines or time.monotonic() - pending_since >= flush_seconds):
                    for batch in builder.flush():
                        spool(batch)
                if not lines:
                    stop.wait(poll_seconds)
        finally:
            for batch in builder.flush():
                spool(batch)
            follower.close()
            stop.set()
            wake.set()
            delivery.join(self.config.options.request_timeout_seconds)

    def _take(self, batch: Batch[Any], log_type: str) -> bool:
        return self.spool.take(
            workspace_id=self.config.identity.workspace_id,
            log_type=log_type,
            records=batch.records,
            body=gzip_bytes(batch.json),
        )

    def _deliver_until(self, stop: threading.Event, wake: threading.Event) -> None:
        """The delivery thread of `follow`: sends when woken by a new batch or when a retry is due."""
        lock = self.spool.sender_lock()
        try:
            while not stop.is_set():
                wake.clear()
                if not lock.acquire():
                    wake.wait(SPOOL_CHECK_SECONDS)
                    continue
                try:
                    report = self.sender.deliver()
                except Exception:  # a thread that died silently would stop delivery for good
                    log.exception("delivery failed; trying again in %d s", DELIVERY_FAILURE_PAUSE_SECONDS)
                    stop.wait(DELIVERY_FAILURE_PAUSE_SECONDS)
                    continue
                if report.retry_at is None:
                    wake.wait(SPOOL_CHECK_SECONDS)
                else:
                    wake.wait(max(0.0, (report.retry_at - self._clock()).total_seconds()))
        finally:
            lock.release()


def _authentication(config: AgentConfig) -> tuple[Authenticator, tuple[Path, Path] | None]:
    """The authenticator, and the (certificate, key) files the TLS handshake presents, if any."""
    identity, state = config.identity, config.state
    if identity.auth is AuthMode.SHARED_KEY:
        return SharedKey(identity.endpoint, identity.workspace_id, read_shared_key(state)), None
    url = agent_logs_url(identity.endpoint, identity.workspace_id)
    # AgentIdentity.from_json requires both in these modes.
    assert identity.agent_id is not None and identity.thumbprint is not None
    if identity.auth is AuthMode.CLIENT_CERTIFICATE:
        files = (state.certificate_file(identity.thumbprint), state.key_file(identity.thumbprint))
        return ClientCertificate(url), files
    credentials = AgentCredentials.registered(state, identity)
    return ClientAssertion(url, identity.agent_id, credentials.key, credentials.certificate), None
