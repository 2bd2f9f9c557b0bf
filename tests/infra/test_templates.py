"""The templates parse (pycep-parser, the parser checkov uses: no Bicep compiler runs here), hang
together, and follow the azd conventions: names from resourceToken each overridable, UPPER_SNAKE
outputs, parameters the parameters file feeds, hook scripts that exist and are valid sh."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.infra.support import INFRA, REPO, bicep_files, parse_bicep

MAIN = INFRA / "main.bicep"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    template = parse_bicep(path)
    assert template.get("resources") or template.get("modules"), f"{path} declares nothing"


def test_main_uses_every_module_and_every_module_exists() -> None:
    main = parse_bicep(MAIN)
    used = {INFRA / module["detail"]["path"] for module in main["modules"].values()}
    assert all(path.is_file() for path in used)
    # blob-created-subscription.bicep is the second deployment, run by infra/hooks/postdeploy.sh.
    second_stage = INFRA / "modules" / "blob-created-subscription.bicep"
    assert second_stage.name in (INFRA / "hooks" / "postdeploy.sh").read_text(encoding="utf-8")
    assert set(bicep_files()) - {MAIN} == used | {second_stage}


def test_outputs_are_upper_snake_for_the_hooks() -> None:
    outputs = parse_bicep(MAIN)["outputs"]
    assert outputs
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in outputs), sorted(outputs)


def test_every_resource_name_is_overridable() -> None:
    text = MAIN.read_text(encoding="utf-8")
    parameters = parse_bicep(MAIN)["parameters"]
    names = [name for name in parameters if name.endswith("Name") and name != "environmentName"]
    assert len(names) >= 12
    for name in names:
        assert parameters[name]["default"] == "", f"{name}: empty default = derived from resourceToken"
        assert f"!empty({name}) ? {name} :" in text, f"{name} is not used as the override it claims to be"


def test_parameters_file_feeds_declared_parameters() -> None:
    declared = parse_bicep(MAIN)["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(given) <= set(declared)
    required = {name for name, p in declared.items() if p["default"] is None}
    assert required <= set(given), f"required parameters azd does not feed: {required - set(given)}"


def test_azure_yaml_declares_the_function_service_and_existing_hooks() -> None:
    config = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))
    assert config["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    hooks = config["hooks"]
    assert set(hooks) == {"preprovision", "postprovision", "postdeploy"}
    for hook in hooks.values():
        script = REPO / hook["run"]
        assert script.is_file() and script.stat().st_mode & 0o111, f"{script} is not an executable file"
        assert hook["shell"] == "sh"


@pytest.mark.parametrize(
    "script",
    [*sorted((INFRA / "hooks").glob("*.sh")), INFRA / "sluice-azure"],
    ids=lambda p: p.name,
)
def test_shell_scripts_are_valid_posix_sh(script: Path) -> None:
    shell = shutil.which("dash") or shutil.which("sh")
    assert shell
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
