"""File operations that survive a crash or power loss at any point (POSIX): a file is written whole
under a temporary name, fsync'ed, renamed into place, and its directory fsync'ed; only then is it
there for good. A crash before that leaves the old state (or a stray temporary file), never a part
of a file under its final name."""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path

OWNER_ONLY_FILE = 0o600
OWNER_ONLY_DIR = 0o700
TEMPORARY_PREFIX = ".tmp-"


def ensure_private_directory(directory: Path) -> Path:
    """Creates the directory (and its parents) owner-only; an existing one is made owner-only too."""
    directory.mkdir(mode=OWNER_ONLY_DIR, parents=True, exist_ok=True)
    directory.chmod(OWNER_ONLY_DIR)
    return directory


def write_durably(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replaces `path` with `data`, its permissions exactly `mode` (owner-only unless asked); returns
    once both the file and its name are on disk. The bytes go to a temporary file of this call's own
    (created O_EXCL, owner-only, then set to `mode`), so no file left at a fixed temporary name, nor
    another writer at the same moment, can lend it their permissions or mix in their bytes."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            temporary.unlink()
        raise
    sync_directory(path.parent)


def remove_durably(path: Path) -> bool:
    """Unlinks `path` for good; False when it was already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    sync_directory(path.parent)
    return True


def move_durably(path: Path, target: Path) -> bool:
    """Renames `path` to `target` (same file system) for good; False when `path` was already gone."""
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return False
    sync_directory(target.parent)
    if target.parent != path.parent:
        sync_directory(path.parent)
    return True


def sync_directory(directory: Path) -> None:
    """Makes the directory's entries (creations, renames, removals) durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stray_temporaries(directory: Path) -> int:
    """Deletes what a crash left of writes that never finished; the caller makes sure none is under way."""
    removed = 0
    for path in directory.glob(TEMPORARY_PREFIX + "*"):
        with suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed
