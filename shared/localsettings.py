"""`local.settings.json` as Functions Core Tools read it: its `Values` become environment variables,
without overriding variables that are already set."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path

LOCAL_SETTINGS_FILE = "local.settings.json"
EXAMPLE_SETTINGS_FILE = "local.settings.example.json"


def load_local_settings(
    path: str | os.PathLike[str], environ: MutableMapping[str, str] | None = None
) -> bool:
    env = os.environ if environ is None else environ
    file = Path(path)
    if not file.is_file():
        return False
    values = json.loads(file.read_text(encoding="utf-8")).get("Values", {})
    for name, value in values.items():
        env.setdefault(name, str(value))
    return True
