"""What the templates and the hooks promise about the code, checked against the code: the tables, the
Event Grid filter and its function, the lifecycle backstop against the plans, least-privilege roles
against who writes secrets, and the hooks' own checks."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared import ids, processing
from shared.plans import PLAN_LIMITS
from tests.infra.support import INFRA, REPO, clean_environment, parse_bicep, resources_of_type


@cache
def _main() -> dict[str, Any]:
    return parse_bicep(INFRA / "main.bicep")


def _main_variable(name: str) -> Any:
    return _main()["variables"][name]["value"]


def _load_deploy_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sluice_deploy_hook", INFRA / "hooks" / "deploy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy = _load_deploy_hook()

# --- storage ------------------------------------------------------------------------------------


def _tables_the_code_opens() -> set[str]:
    """The default `table_name` of every table adapter in shared/ (resolved from module constants)."""
    tables: set[str] = set()
    for path in (REPO / "shared").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                arguments = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults
                defaults += node.args.kw_defaults
                for argument, default in zip(arguments, defaults, strict=True):
                    if argument.arg == "table_name" and isinstance(default, ast.Name):
                        tables.add(constants[default.id])
    return tables


def test_the_data_account_has_exactly_the_tables_the_code_opens() -> None:
    code = _tables_the_code_opens()
    assert {"workspaces", "audit"} <= code  # the registry and the audit log at least
    assert set(_main_variable("dataTables")) == code


def test_the_lifecycle_backstop_covers_workspace_containers_beyond_every_plan_window() -> None:
    storage = parse_bicep(INFRA / "modules" / "storage.bicep")
    (policy,) = resources_of_type(storage, "Microsoft.Storage/storageAccounts/managementPolicies")
    (rule,) = policy["properties"]["policy"]["rules"]
    assert rule["definition"]["filters"]["prefixMatch"] == [ids.CONTAINER_PREFIX]
    assert rule["definition"]["actions"]["baseBlob"]["delete"] == {
        "daysAfterModificationGreaterThan": "rawBackstopDays"
    }
    default = _main()["parameters"]["rawBackstopDays"]["default"]
    longest = max(limits.raw_retention_days for limits in PLAN_LIMITS.values())
    assert default == deploy.DEFAULT_BACKSTOP_DAYS == longest + deploy.BACKSTOP_MARGIN_DAYS


def test_the_dead_letter_container_is_no_workspace_container() -> None:
    name = _main_variable("deadLetterContainerName")
    assert not name.startswith(ids.CONTAINER_PREFIX)  # no BlobCreated to process_blob, no lifecycle rule


# --- Event Grid -----------------------------------------------------------------------------------


def test_the_subscription_sends_raw_blobs_of_workspace_containers_to_process_blob() -> None:
    template = parse_bicep(INFRA / "modules" / "blob-created-subscription.bicep")
    (subscription,) = resources_of_type(template, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    properties = subscription["properties"]
    event_filter = properties["filter"]
    assert event_filter["includedEventTypes"] == [processing.BLOB_CREATED]
    assert event_filter["subjectBeginsWith"] == processing._SUBJECT_PREFIX + ids.CONTAINER_PREFIX
    (raw_only,) = event_filter["advancedFilters"]
    assert raw_only == {
        "operatorType": "StringContains",
        "key": "subject",
        "values": [f"/blobs/{ids.RAW_PREFIX}"],
    }
    assert properties["destination"]["endpointType"] == "AzureFunction"
    assert properties["deadLetterWithResourceIdentity"]["identity"] == {"type": "SystemAssigned"}
    function = template["parameters"]["functionName"]["default"]
    bindings = json.loads((REPO / function / "function.json").read_text(encoding="utf-8"))["bindings"]
    assert [b["type"] for b in bindings] == ["eventGridTrigger"]


# --- roles ------------------------------------------------------------------------------------------


def _role_assignments() -> dict[str, set[str]]:
    """Principal parameter -> role names (keys of `roles`) assigned to it in rbac.bicep."""
    text = (INFRA / "rbac.bicep").read_text(encoding="utf-8")
    role_lists = {
        name: set(re.findall(r"roles\.(\w+)", body))
        for name, body in re.findall(r"^var (\w+) = \[(.*)\]$", text, re.M)
    }
    assigned: dict[str, set[str]] = {}
    for block in re.split(r"^resource ", text, flags=re.M)[1:]:
        if "Microsoft.Authorization/roleAssignments" not in block.splitlines()[0]:
            continue
        (principal,) = re.findall(r"principalId: (\w+)", block)
        loop = re.search(r"for role in (\w+)", block)
        roles = (
            role_lists[loop.group(1)] if loop else set(re.findall(r"roleDefinitions', roles\.(\w+)\)", block))
        )
        assigned.setdefault(principal, set()).update(roles)
    return assigned


SECRET_WRITES = {"set_secret", "delete_secret"}
# Where SecretStore itself is declared and implemented: their set_secret is not a use of it.
SECRET_STORES = {"shared/workspaces.py:SecretStore", "shared/keyvault.py", "shared/secretstore.py"}


def _app_modules() -> list[Path]:
    """What the function app runs: the function folders and shared/, less the operators' CLI."""
    folders = [path for folder in REPO.glob("*/function.json") for path in folder.parent.glob("*.py")]
    shared = [p for p in (REPO / "shared").rglob("*.py") if (REPO / "shared" / "cli") not in p.parents]
    return sorted(folders + shared)


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualified name, node) of every module-level function and method."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{item.name}", item


def _called_names(calls: Iterable[ast.Call]) -> set[str]:
    functions = [call.func for call in calls]
    return {
        f.attr if isinstance(f, ast.Attribute) else f.id
        for f in functions
        if isinstance(f, ast.Attribute | ast.Name)
    }


def _calls(node: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Call)]


def secret_writers_the_app_runs() -> list[str]:
    """Functions that set or delete a secret and that the app's own code calls (by name, anywhere in
    the app outside the writer's own body). A writer only the CLI calls (workspace creation, key
    rotation, diagnostics sources) runs with the operator's identity, not the app's."""
    trees = {
        str(path.relative_to(REPO)): ast.parse(path.read_text(encoding="utf-8")) for path in _app_modules()
    }
    reached = []
    for where, tree in trees.items():
        for name, node in _functions(tree):
            if where in SECRET_STORES or f"{where}:{name.split('.')[0]}" in SECRET_STORES:
                continue
            if not _called_names(_calls(node)) & SECRET_WRITES:
                continue
            own = {id(call) for call in _calls(node)}
            elsewhere = [call for other in trees.values() for call in _calls(other) if id(call) not in own]
            if name.split(".")[-1] in _called_names(elsewhere):
                reached.append(f"{where}: {name}")
    return sorted(reached)


def test_roles_are_least_privilege() -> None:
    assigned = _role_assignments()
    writers = secret_writers_the_app_runs()
    # Key Vault Secrets Officer only where the app must write (here: delete) secrets, else read only.
    secrets_role = "keyVaultSecretsOfficer" if writers else "keyVaultSecretsUser"
    assert assigned["appPrincipalId"] == {
        "storageBlobDataOwner",  # on the host's account only
        "storageBlobDataContributor",
        "storageTableDataContributor",
        secrets_role,
        "monitoringMetricsPublisher",
    }, f"secret writers the app runs: {writers or 'none'}; rbac.bicep should grant it {secrets_role}"
    assert assigned["userPrincipalId"] == {
        "storageBlobDataContributor",
        "storageTableDataContributor",
        "keyVaultSecretsOfficer",
    }
    assert assigned["systemTopicPrincipalId"] == {"storageBlobDataContributor"}


def test_the_secret_writers_the_app_runs_are_the_known_ones() -> None:
    # Retention removes a deleted workspace's keys and its diagnostics sources' SAS after its grace
    # period; the query API makes its continuation-token key on first use; nothing else the app runs
    # writes a secret (keys are created and rotated by the CLI).
    assert secret_writers_the_app_runs() == [
        "shared/diagnostics.py: remove_source",
        "shared/query.py: continuation_key",
        "shared/retention.py: Retention.remove",
    ]


# --- the hooks' own checks ------------------------------------------------------------------------


def test_check_plans_accepts_the_defaults_and_the_committed_plans_file() -> None:
    assert deploy.check_plans("{}", {}) == []
    assert deploy.check_plans(deploy.PLANS_FILE.read_text(encoding="utf-8"), {}) == []


def test_check_plans_refuses_a_window_the_backstop_would_cut_into() -> None:
    plans = '{"premium": {"raw_retention_days": 400}}'
    (problem,) = deploy.check_plans(plans, {})
    assert "premium" in problem and "407" in problem
    assert deploy.check_plans(plans, {deploy.BACKSTOP_SETTING: "407"}) == []


@pytest.mark.parametrize(
    "plans", ['{"premium": {"raw_retention_days": 0}}', '{"gold": {}}', "{not json", '{"free": []}']
)
def test_check_plans_refuses_what_the_app_would_refuse(plans: str) -> None:
    (problem,) = deploy.check_plans(plans, {})
    assert problem.startswith("plans.json: Setting SLUICE_PLANS")


def test_the_preprovision_hook_runs_the_check() -> None:
    hook = INFRA / "hooks" / "preprovision.sh"
    ok = subprocess.run([hook], env=clean_environment(), capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    env = {**clean_environment(), deploy.BACKSTOP_SETTING: "100"}
    refused = subprocess.run([hook], env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    assert "SLUICE_RAW_BACKSTOP_DAYS=100" in refused.stderr


@pytest.mark.parametrize(
    ("name", "object_id"),
    [
        ("id-abc]; DROP USER x; --", "00000000-0000-0000-0000-000000000001"),
        ("id-abc", "00000000-0000-0000-0000-000000000001'; --"),
        ("x", "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_the_app_user_grant_refuses_odd_names_and_ids(name: str, object_id: str) -> None:
    with pytest.raises(ValueError):
        deploy.app_user_parameters(name, object_id)


def test_the_app_user_grant_binds_its_values_and_grants_one_role() -> None:
    assert deploy.app_user_parameters("id-abc123", "0000000000000000000000000000000A") == (
        "id-abc123",
        "00000000-0000-0000-0000-00000000000a",
    )
    statement = deploy.GRANT_APP_USER
    assert statement.count("?") == 2 and "QUOTENAME(@name)" in statement
    assert re.findall(r"ALTER ROLE (\w+)", statement) == [deploy.APP_ROLE]
    migrations = "".join(p.read_text(encoding="utf-8") for p in (REPO / "shared/sql/tsql").glob("V*.sql"))
    assert f"CREATE ROLE {deploy.APP_ROLE}" in migrations  # created by the migrations the hook runs first


def test_the_hook_module_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, str(INFRA / "hooks" / "deploy.py"), "no-such-step"],
        env={**clean_environment(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "usage" in result.stderr
