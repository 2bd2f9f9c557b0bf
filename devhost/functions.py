"""The function folders as the Functions host finds them: every `*/function.json` under the app root,
its one trigger binding, and the entry point it names (`scriptFile`, `entryPoint`, default `main`)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

DEFAULT_SCRIPT_FILE = "__init__.py"
DEFAULT_ENTRY_POINT = "main"
RETURN_BINDING = "$return"

log = logging.getLogger("sluice.devhost.functions")


class FunctionLoadError(Exception):
    """A function.json this host cannot run; raised at start, never per invocation."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    trigger: Mapping[str, Any]
    entry: Callable[..., object]

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    def invoke(self, trigger_value: object) -> object:
        # The worker passes the trigger as the keyword named by the binding, so the name must match.
        return self.entry(**{str(self.trigger["name"]): trigger_value})


def discover(root: Path, environ: Mapping[str, str]) -> list[FunctionSpec]:
    """Every function under `root` except those disabled with `AzureWebJobs.<name>.Disabled=true`, the
    app setting the Functions host honours."""
    # The Functions host puts the app root on sys.path; folders are imported as top-level packages.
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    specs = []
    for config in sorted(root.glob("*/function.json")):
        name = config.parent.name
        if environ.get(f"AzureWebJobs.{name}.Disabled", "").lower() == "true":
            log.info("function %s is disabled by its app setting", name)
            continue
        specs.append(load_function(config))
    return specs


def load_function(config: Path) -> FunctionSpec:
    document = json.loads(config.read_text(encoding="utf-8"))
    folder = config.parent
    bindings: list[Mapping[str, Any]] = document.get("bindings", [])
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise FunctionLoadError(f"{config}: expected one trigger binding, found {len(triggers)}")
    # Other bindings would need the host to fill or collect them; only a `$return` output is supported.
    for binding in bindings:
        if binding is not triggers[0] and binding.get("name") != RETURN_BINDING:
            raise FunctionLoadError(
                f"{config}: binding {binding.get('name')!r} ({binding.get('type')}) is not supported here"
            )
    module = import_module(_module_name(folder, document.get("scriptFile", DEFAULT_SCRIPT_FILE)))
    entry_point = document.get("entryPoint", DEFAULT_ENTRY_POINT)
    entry = getattr(module, entry_point, None)
    if not callable(entry):
        raise FunctionLoadError(f"{config}: {module.__name__}.{entry_point} is not a function")
    return FunctionSpec(name=folder.name, trigger=triggers[0], entry=entry)


def _module_name(folder: Path, script_file: str) -> str:
    script = (folder / script_file).resolve()
    if script.suffix != ".py" or script.parent != folder.resolve():
        raise FunctionLoadError(f"{folder}: scriptFile {script_file!r} must be a .py file in the folder")
    return folder.name if script.name == DEFAULT_SCRIPT_FILE else f"{folder.name}.{script.stem}"
