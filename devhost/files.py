"""Files in the state dir replaced whole: keys, certificates, the demo workspace, dead letters."""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Replaces `path` with `data`, its permissions exactly `mode`: a reader sees the old file or the
    new one, never part of one. The bytes go first to a temporary file of this call's own (created
    O_CREAT|O_EXCL, owner-only, then set to `mode`), so neither a file left at some fixed temporary
    name nor another writer at the same moment can lend it their permissions or mix in their bytes."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
