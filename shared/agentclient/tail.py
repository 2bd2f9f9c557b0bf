"""Following a log file across rotation, from a durable checkpoint.

A position is the file's inode, the offset after the last line read, and a fingerprint (sha256 of the
file's first bytes, up to FINGERPRINT_BYTES) that tells the same file from one that was truncated or
replaced. The caller saves a line's position only once the batch holding that line is in the spool,
so a restart reads again what was not taken yet (at least once).

Rotation:
- rename and create (logrotate's default): the path names a new file. The renamed one is read to its
  end; once it has not grown for a whole read, its last line is taken even without a newline, and
  the new file is followed from its start.
- copytruncate: the file shrinks below the offset, or its first bytes change (it was truncated and
  written past the offset between two reads). It is read again from its start. Lines written between
  the copy and the truncation are lost: that gap is copytruncate's own.
- rotated while the agent was stopped: the checkpoint's file is looked for by inode in the same
  directory (logrotate renames within it), read to its end, and then the new file from its start. If
  it is gone (deleted, compressed), the new file is read from its start and a warning says so.

With no checkpoint, a file is followed from its end (like `tail -F`), or from its start if asked; a
file that does not exist yet is read from its start once it appears."""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import orjson

from shared.durable import ensure_private_directory, write_durably

FINGERPRINT_BYTES = 1024
# One read takes at most this much of the file; a line longer than that is cut into pieces.
READ_BYTES = 1024 * 1024

log = logging.getLogger("sluice.agent.tail")


@dataclass(frozen=True, slots=True)
class FilePosition:
    inode: int
    offset: int  # everything before it was read as lines
    fingerprint: str  # sha256 hex of the file's first fingerprint_length bytes
    fingerprint_length: int


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    position: FilePosition  # where reading resumes after this line


class _OpenFile:
    def __init__(self, descriptor: int, *, offset: int, fingerprint: str = "", fingerprint_length: int = 0):
        self.descriptor = descriptor
        self.inode = os.fstat(descriptor).st_ino
        self.offset = offset
        self.fingerprint = fingerprint
        self.fingerprint_length = fingerprint_length
        self.size_at_last_read = -1

    @property
    def position(self) -> FilePosition:
        return FilePosition(self.inode, self.offset, self.fingerprint, self.fingerprint_length)

    def first_bytes_hash(self, length: int) -> str:
        return hashlib.sha256(os.pread(self.descriptor, length, 0)).hexdigest()

    def extend_fingerprint(self) -> None:
        length = min(FINGERPRINT_BYTES, self.offset)
        if length > self.fingerprint_length:
            self.fingerprint, self.fingerprint_length = self.first_bytes_hash(length), length

    def truncated(self, size: int) -> bool:
        if size < self.offset:
            return True
        return (
            self.fingerprint_length > 0 and self.first_bytes_hash(self.fingerprint_length) != self.fingerprint
        )

    def restart(self) -> None:
        self.offset, self.fingerprint, self.fingerprint_length = 0, "", 0


class LogFollower:
    def __init__(self, path: Path, *, checkpoint: FilePosition | None, from_beginning: bool = False) -> None:
        self._path = path
        self._checkpoint = checkpoint
        self._from_beginning = from_beginning
        self._current: _OpenFile | None = None

    @property
    def position(self) -> FilePosition | None:
        return self._current.position if self._current else None

    def read(self) -> list[Line]:
        """The lines added since the last call, from at most READ_BYTES of the file."""
        current = self._current or self._open_first()
        if current is None:
            return []
        self._current = current
        size = os.fstat(current.descriptor).st_size
        if current.truncated(size):
            log.warning("%s was truncated (copytruncate?): reading it again from its start", self._path)
            current.restart()
        grew = size != current.size_at_last_read
        current.size_at_last_read = size
        lines, caught_up = self._read_lines(current, size, final=False)
        if lines or grew or not caught_up or not self._replaced(current):
            return lines
        # Renamed away, a new file in its place, and this one unchanged for a whole read: done with it.
        last, _ = self._read_lines(current, size, final=True)
        self._switch(self._open_path(at_end=False))
        return last

    def close(self) -> None:
        self._switch(None)

    def _read_lines(self, current: _OpenFile, size: int, *, final: bool) -> tuple[list[Line], bool]:
        """Complete lines from the offset on (with `final`, also an unterminated last one), and whether
        everything up to `size` was read but that last piece."""
        start = current.offset
        data = os.pread(current.descriptor, min(READ_BYTES, size - start), start)
        pieces = data.split(b"\n")
        rest = pieces.pop()  # after the last newline: a line still being written
        ends = []
        offset = start
        for piece in pieces:
            offset += len(piece) + 1
            ends.append((piece, offset))
        if rest and (final or (len(data) == READ_BYTES and not pieces)):
            offset += len(rest)  # a last line, or one longer than a whole read: taken as it is
            ends.append((rest, offset))
        current.offset = offset
        current.extend_fingerprint()
        position = current.position
        lines = [
            Line(piece.decode("utf-8", "replace").rstrip("\r"), _at(position, end)) for piece, end in ends
        ]
        return lines, start + len(data) >= size

    def _replaced(self, current: _OpenFile) -> bool:
        try:
            return os.stat(self._path).st_ino != current.inode
        except FileNotFoundError:  # renamed, and the new one not created yet
            return False

    def _switch(self, following: _OpenFile | None) -> None:
        if self._current is not None:
            os.close(self._current.descriptor)
        self._current = following

    def _open_first(self) -> _OpenFile | None:
        checkpoint = self._checkpoint
        if checkpoint is None:
            return self._open_path(at_end=not self._from_beginning)
        found = self._find(checkpoint.inode)
        if found is None:
            log.warning(
                "%s: the file read before (inode %d) is gone; reading the current one from its start",
                self._path,
                checkpoint.inode,
            )
            return self._open_path(at_end=False)
        try:
            descriptor = os.open(found, os.O_RDONLY)
        except FileNotFoundError:
            return None  # renamed again meanwhile: the next read looks again
        return _OpenFile(
            descriptor,
            offset=checkpoint.offset,
            fingerprint=checkpoint.fingerprint,
            fingerprint_length=checkpoint.fingerprint_length,
        )

    def _open_path(self, *, at_end: bool) -> _OpenFile | None:
        try:
            descriptor = os.open(self._path, os.O_RDONLY)
        except FileNotFoundError:
            self._from_beginning = True  # when it appears, everything in it is new
            self._checkpoint = None
            return None
        opened = _OpenFile(descriptor, offset=os.fstat(descriptor).st_size if at_end else 0)
        opened.extend_fingerprint()
        return opened

    def _find(self, inode: int) -> Path | None:
        """The path, or the file beside it, that has this inode."""
        with suppress(FileNotFoundError):
            if os.stat(self._path).st_ino == inode:
                return self._path
        with suppress(FileNotFoundError), os.scandir(self._path.parent) as entries:
            for entry in entries:
                if entry.inode() == inode and entry.is_file(follow_symlinks=False):
                    return Path(entry.path)
        return None


def _at(position: FilePosition, offset: int) -> FilePosition:
    return FilePosition(position.inode, offset, position.fingerprint, position.fingerprint_length)


class CheckpointStore:
    """One file per followed path in the state dir's tail/, replaced whole and fsync'ed."""

    def __init__(self, directory: Path) -> None:
        self._directory = ensure_private_directory(directory)

    def load(self, path: Path) -> FilePosition | None:
        try:
            document = orjson.loads(self._file(path).read_bytes())
            return FilePosition(
                inode=int(document["inode"]),
                offset=int(document["offset"]),
                fingerprint=str(document["fingerprint"]),
                fingerprint_length=int(document["fingerprint_length"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            log.warning("ignored the unreadable checkpoint of %s: %s", path, error)
            return None

    def save(self, path: Path, position: FilePosition) -> None:
        document = {
            "path": str(path.absolute()),
            "inode": position.inode,
            "offset": position.offset,
            "fingerprint": position.fingerprint,
            "fingerprint_length": position.fingerprint_length,
        }
        write_durably(self._file(path), orjson.dumps(document))

    def _file(self, path: Path) -> Path:
        # The path as given, not resolved: following a symlink's name means following what it names.
        return self._directory / f"{hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:32]}.json"
