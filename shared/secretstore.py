"""The local secret store for the local stack: one file per secret under a folder that only the
owner can read. In Azure the secrets are in Key Vault (its adapter implements the same port)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from shared.errors import NotFound

_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")  # Key Vault's rule, so names port unchanged


class LocalSecretStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._directory = Path(directory)

    def _path(self, name: str) -> Path:
        if not _SECRET_NAME.fullmatch(name):
            raise ValueError(f"invalid secret name {name!r}")
        return self._directory / name

    def get_secret(self, name: str) -> str:
        try:
            return self._path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"Secret {name} does not exist.") from None

    def set_secret(self, name: str, value: str) -> None:
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(name)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(value)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def delete_secret(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
