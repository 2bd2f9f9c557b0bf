"""`local.settings.json` as Functions Core Tools read it: its `Values` become environment variables,
without overriding variables that are already set."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

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


def add_missing_settings(folder: str | os.PathLike[str]) -> list[str]:
    """Creates `local.settings.json` from the example, or adds the example's settings it lacks (a
    checkout older than a new setting), never changing a value already there. Returns what it added."""
    local, example = Path(folder) / LOCAL_SETTINGS_FILE, Path(folder) / EXAMPLE_SETTINGS_FILE
    defaults: dict[str, Any] = json.loads(example.read_text(encoding="utf-8"))
    current: dict[str, Any] = json.loads(local.read_text(encoding="utf-8")) if local.is_file() else {}
    values = current.setdefault("Values", {})
    added = [name for name in defaults.get("Values", {}) if name not in values]
    for name in added:
        values[name] = defaults["Values"][name]
    for name, value in defaults.items():
        current.setdefault(name, value)
    if added or not local.is_file():
        local.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    return added
