"""Finding and loading the function folders from their function.json files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import REPO_ROOT
from devhost.functions import FunctionLoadError, discover


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """discover() puts the app root on sys.path, as the Functions host does; undo it per test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_given_the_repo_then_each_function_folder_is_found_with_its_trigger() -> None:
    functions = {f.name: f for f in discover(REPO_ROOT, {})}

    assert {name: f.trigger_type for name, f in functions.items()} == {
        "ingest_http": "httpTrigger",
        "ingest_agent": "httpTrigger",
        "register_agent": "httpTrigger",
        "ingest_logs": "httpTrigger",
        "query_api": "httpTrigger",
        "openapi": "httpTrigger",
        "dashboard": "httpTrigger",
        "process_blob": "eventGridTrigger",
        "retention_timer": "timerTrigger",
        "diag_reader": "timerTrigger",
    }
    assert functions["ingest_http"].entry.__module__ == "ingest_http"
    assert functions["retention_timer"].trigger["schedule"] == "0 0 2 * * *"


def test_given_the_disabled_app_setting_then_the_function_is_skipped() -> None:
    names = {f.name for f in discover(REPO_ROOT, {"AzureWebJobs.retention_timer.Disabled": "true"})}

    assert "retention_timer" not in names
    assert "ingest_http" in names


def _app(root: Path, folder: str, config: dict[str, Any], files: dict[str, str]) -> Path:
    (root / folder).mkdir(parents=True)
    (root / folder / "function.json").write_text(json.dumps(config), encoding="utf-8")
    for name, text in files.items():
        (root / folder / name).write_text(text, encoding="utf-8")
    return root


HTTP_IN = {"type": "httpTrigger", "direction": "in", "name": "request"}


def test_given_script_file_and_entry_point_then_that_function_is_invoked_by_binding_name(
    tmp_path: Path,
) -> None:
    root = _app(
        tmp_path,
        "devhost_fn_entry",
        {"scriptFile": "handler.py", "entryPoint": "run", "bindings": [HTTP_IN]},
        {"__init__.py": "", "handler.py": "def run(request):\n    return ('ran', request)\n"},
    )

    (function,) = discover(root, {})

    assert function.invoke("value") == ("ran", "value")


@pytest.mark.parametrize(
    ("bindings", "files", "message"),
    [
        ([], {"__init__.py": ""}, "one trigger"),
        ([HTTP_IN, {"type": "timerTrigger", "name": "t"}], {"__init__.py": ""}, "one trigger"),
        ([HTTP_IN, {"type": "blob", "direction": "in", "name": "doc"}], {"__init__.py": ""}, "not supported"),
        ([HTTP_IN], {"__init__.py": "x = 1\n"}, "not a function"),
    ],
)
def test_given_a_function_json_this_host_cannot_run_then_loading_fails_clearly(
    tmp_path: Path, bindings: list[dict[str, str]], files: dict[str, str], message: str
) -> None:
    root = _app(
        tmp_path, f"devhost_fn_bad_{abs(hash(message + str(bindings)))}", {"bindings": bindings}, files
    )

    with pytest.raises(FunctionLoadError, match=message):
        discover(root, {})


def test_given_a_script_file_outside_the_folder_then_loading_fails(tmp_path: Path) -> None:
    root = _app(tmp_path, "devhost_fn_outside", {"scriptFile": "../elsewhere.py", "bindings": [HTTP_IN]}, {})

    with pytest.raises(FunctionLoadError, match="scriptFile"):
        discover(root, {})
