"""The durable on-disk spool: every batch is a file in `spool/`, kept until the service answers 2xx.

A batch counts as taken only once it is on disk for good: written to a temporary file, fsync'ed,
renamed to its final name, and the directory fsync'ed (shared.durable). A tail advances
its checkpoint only after that, so `kill -9` or a power cut at any point loses nothing: what was not
taken is read again, what was taken is sent (again, if its 2xx was lost: at least once).

File names order the batches (`{sequence:020d}-{random}.batch`: the sequence gives the order, the
random part makes every name new, so a name whose batch was dropped never comes back for another).
Each file holds one JSON header line (workspace, log type, record count, when it was taken) and then
the gzip body exactly as it will be posted.

The spool is capped at `max_bytes` on disk, refused batches (`spool/rejected/`) included: to take a
new batch, refused ones go first and then pending ones, oldest first, with a logged count. A batch
larger than the whole cap is dropped itself. Takes from several threads or processes are serialised
by a lock file; sending is one process's job at a time (SenderLock)."""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from shared.durable import (
    OWNER_ONLY_FILE,
    ensure_private_directory,
    move_durably,
    remove_durably,
    remove_stray_temporaries,
    write_durably,
)

BATCH_SUFFIX = ".batch"
REJECTED_DIR = "rejected"
LOCK_FILE = ".lock"
SENDER_LOCK_FILE = ".sender"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 4096

log = logging.getLogger("sluice.agent.spool")


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    path: Path
    workspace_id: str
    log_type: str
    records: int
    created_at: datetime

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True, slots=True)
class BatchCount:
    batches: int = 0
    records: int = 0

    def __add__(self, other: BatchCount) -> BatchCount:
        return BatchCount(self.batches + other.batches, self.records + other.records)


@dataclass(frozen=True, slots=True)
class SpoolSummary:
    batches: int
    bytes: int
    records: int
    oldest_created_at: datetime | None
    rejected_batches: int
    rejected_bytes: int


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, clock: Callable[[], datetime]) -> None:
        self._directory = directory
        self._rejected = directory / REJECTED_DIR
        self._max_bytes = max_bytes
        self._clock = clock
        ensure_private_directory(directory)
        ensure_private_directory(self._rejected)
        with self._locked():  # no take is under way: any temporary file is a crash's leftover
            remove_stray_temporaries(directory)

    @property
    def directory(self) -> Path:
        return self._directory

    def take(self, *, workspace_id: str, log_type: str, records: int, body: bytes) -> bool:
        """Writes the batch for good and returns True once it is; older batches make room under the
        cap first. False: the batch alone is larger than the cap, and is dropped (logged)."""
        header = {
            "v": FORMAT_VERSION,
            "workspace_id": workspace_id,
            "log_type": log_type,
            "records": records,
            "created_at": self._clock().astimezone(UTC).isoformat(),
        }
        content = orjson.dumps(header) + b"\n" + body
        if len(content) > self._max_bytes:
            log.error(
                "dropped a batch of %d records (%d bytes): larger than the whole spool cap of %d bytes",
                records,
                len(content),
                self._max_bytes,
            )
            return False
        with self._locked():
            self._make_room(len(content))
            name = f"{self._next_sequence():020d}-{uuid.uuid4().hex[:8]}{BATCH_SUFFIX}"
            write_durably(self._directory / name, content)
        return True

    def oldest(self) -> SpooledBatch | None:
        """The next batch to send; a file whose header cannot be read is moved aside on the way."""
        for path in self._pending():
            try:
                return _read_header(path)
            except FileNotFoundError:  # dropped meanwhile (cap)
                continue
            except ValueError as error:
                log.error("moved aside spooled file %s: its header cannot be read (%s)", path.name, error)
                move_durably(path, self._rejected / f"{path.stem}.unreadable{BATCH_SUFFIX}")
        return None

    def body(self, batch: SpooledBatch) -> bytes:
        """The gzip body as it is posted; FileNotFoundError when the batch was dropped meanwhile."""
        with batch.path.open("rb") as handle:
            handle.readline(MAX_HEADER_BYTES)
            return handle.read()

    def remove(self, batch: SpooledBatch) -> None:
        """Delivered: gone from the spool for good (already gone is fine)."""
        remove_durably(batch.path)

    def reject(self, batch: SpooledBatch, reason: str) -> Path:
        """Moves the batch to rejected/, its name tagged with `reason`; returns where it went."""
        target = self._rejected / f"{batch.path.stem}.{reason}{BATCH_SUFFIX}"
        move_durably(batch.path, target)
        return target

    def drop_older_than(self, cutoff: datetime) -> BatchCount:
        """Deletes every pending batch taken at or before `cutoff`."""
        dropped = BatchCount()
        for path in self._pending():
            with suppress(FileNotFoundError, ValueError):
                batch = _read_header(path)
                if batch.created_at <= cutoff and remove_durably(path):
                    dropped += BatchCount(1, batch.records)
        return dropped

    def summary(self) -> SpoolSummary:
        pending: list[SpooledBatch] = []
        size = 0
        for path in self._pending():
            with suppress(FileNotFoundError, ValueError):
                pending.append(_read_header(path))
                size += path.stat().st_size
        rejected = _sizes(self._rejected)
        return SpoolSummary(
            batches=len(pending),
            bytes=size,
            records=sum(b.records for b in pending),
            oldest_created_at=min((b.created_at for b in pending), default=None),
            rejected_batches=len(rejected),
            rejected_bytes=sum(s for _, s in rejected),
        )

    def sender_lock(self) -> SenderLock:
        return SenderLock(self._directory / SENDER_LOCK_FILE)

    def _pending(self) -> list[Path]:
        return sorted(self._directory.glob("*" + BATCH_SUFFIX))

    def _next_sequence(self) -> int:
        sequences = [int(p.name[:20]) for p in self._pending() if p.name[:20].isdigit()]
        return max(sequences, default=0) + 1

    def _make_room(self, needed: int) -> None:
        """Drops refused batches, then pending ones, oldest first, until `needed` more bytes fit."""
        rejected, pending = _sizes(self._rejected), _sizes(self._directory)
        total = sum(s for _, s in rejected) + sum(s for _, s in pending)
        dropped_rejected, dropped = 0, BatchCount()
        for path, size in rejected + pending:
            if total + needed <= self._max_bytes:
                break
            records = 0
            if path.parent == self._directory:
                with suppress(FileNotFoundError, ValueError):
                    records = _read_header(path).records
            with suppress(FileNotFoundError):
                path.unlink()  # made durable by the directory sync of the take that follows
                if path.parent == self._directory:
                    dropped += BatchCount(1, records)
                else:
                    dropped_rejected += 1
            total -= size
        if dropped_rejected:
            log.warning(
                "spool cap of %d bytes: dropped %d refused batches", self._max_bytes, dropped_rejected
            )
        if dropped.batches:
            log.warning(
                "spool cap of %d bytes: dropped the %d oldest batches (%d records)",
                self._max_bytes,
                dropped.batches,
                dropped.records,
            )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Across threads and processes: flock is per open file, and each call opens the file anew."""
        descriptor = _open_lock_file(self._directory / LOCK_FILE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)


class SenderLock:
    """Held by the one process that delivers a spool, so no batch is in flight twice at once. The
    operating system releases it when the process ends, however it ends (kill -9 included)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._descriptor: int | None = None

    def acquire(self) -> bool:
        """True when this process holds it now; False when another one does."""
        if self._descriptor is not None:
            return True
        descriptor = _open_lock_file(self._path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def _open_lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, OWNER_ONLY_FILE)


def _read_header(path: Path) -> SpooledBatch:
    """Raises FileNotFoundError when the file is gone, ValueError when its header is not one."""
    with path.open("rb") as handle:
        line = handle.readline(MAX_HEADER_BYTES)
    try:
        header = orjson.loads(line)
        if header["v"] != FORMAT_VERSION:
            raise ValueError(f"format version {header['v']}")
        return SpooledBatch(
            path=path,
            workspace_id=str(header["workspace_id"]),
            log_type=str(header["log_type"]),
            records=int(header["records"]),
            created_at=datetime.fromisoformat(header["created_at"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{type(error).__name__}: {error}") from None


def _sizes(directory: Path) -> list[tuple[Path, int]]:
    """The batch files of a directory with their sizes, oldest first: by when they were written (a
    rename keeps that), since refused batches from different runs of the sequence sit side by side."""
    stats = []
    for path in directory.glob("*" + BATCH_SUFFIX):
        with suppress(FileNotFoundError):
            stats.append((path, path.stat()))
    stats.sort(key=lambda entry: (entry[1].st_mtime_ns, entry[0].name))
    return [(path, stat.st_size) for path, stat in stats]
