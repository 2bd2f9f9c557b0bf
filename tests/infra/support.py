"""What the infra tests share: the templates parsed with pycep-parser (the parser checkov uses), the app
settings the Bicep gives the function app, the settings the code's Settings object reads, and the
coverage check between the two."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
FUNCTION_APP_BICEP = INFRA / "modules" / "function-app.bicep"
LOCAL_EXAMPLE_SETTINGS = REPO / "local.settings.example.json"

# Set by the Bicep, read by the platform rather than by Sluice's code.
PLATFORM_SETTINGS: dict[str, str] = {
    "AzureWebJobsStorage__accountName": "the Functions host's storage account (host state, keys, timers)",
    "AzureWebJobsStorage__credential": "the host reaches its storage with a managed identity, no key",
    "AzureWebJobsStorage__clientId": "which identity: the app's user-assigned one",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": (
        "the host signs its telemetry in with the identity (the component's local auth is off)"
    ),
}
# Read by the code, deliberately not set in Azure: each is an alternative the Azure form replaces.
UNSET_IN_AZURE: dict[str, str] = {
    "SLUICE_STORAGE": (
        "a storage connection string (Azurite, keys); Azure uses the identity-based SLUICE_STORAGE__* form"
    ),
    "SLUICE_SECRETS_DIR": "the local secret store; Azure uses Key Vault (SLUICE_KEY_VAULT_URI)",
    "SLUICE_SQL_CONNECTION_SECRET": (
        "read with SLUICE_SQL_AUTH=secret only (SQL logins); Azure SQL here accepts Entra tokens only"
    ),
}
# Values standing in for the Bicep expressions (parameters, outputs of other modules) when the Azure
# configuration is handed to Settings.from_env: the form each setting must have, not its real value.
AZURE_SAMPLE_VALUES: dict[str, str] = {
    "SLUICE_STORAGE__blobServiceUri": "https://stsample.blob.core.windows.net/",
    "SLUICE_STORAGE__tableServiceUri": "https://stsample.table.core.windows.net/",
    "SLUICE_STORAGE__clientId": "00000000-0000-0000-0000-000000000001",
    "SLUICE_SQL_CONNECTION": (
        "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql-sample.database.windows.net,1433;"
        "Database=sqldb-sluice;Encrypt=yes;TrustServerCertificate=no;Connection Timeout=30"
    ),
    "SLUICE_KEY_VAULT_URI": "https://kv-sample.vault.azure.net/",
    "SLUICE_TRUST_FORWARDED_CLIENT_CERT": "false",
    "SLUICE_TOKEN_ISSUER": "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000002/v2.0",
    "SLUICE_TOKEN_JWKS_URI": (
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000002/discovery/v2.0/keys"
    ),
    "SLUICE_PLANS": "",
    "SLUICE_LOG_LEVEL": "INFO",
    "SLUICE_WORKSPACE_DELETE_GRACE_DAYS": "14",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000003",
}


class SettingsClass(Protocol):
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Any: ...


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def _parser() -> Any:
    # Lark caches the grammar it compiles (about 20 s, once per machine) in the temporary folder;
    # one parser serves the whole session.
    from pycep import BicepParser

    return BicepParser()


def parse_bicep(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = _parser().parse(file_path=path)
    return parsed


def parse_bicep_text(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = _parser().parse(text=text)
    return parsed


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> Iterator[dict[str, Any]]:
    """The config of each resource of that type; a conditional resource's config is one level down."""
    for resource in template.get("resources", {}).values():
        if resource["type"] == resource_type:
            config = resource["config"]
            yield config.get("config", config) if "condition" in config else config


def bicep_app_settings(template: Mapping[str, Any]) -> dict[str, Any]:
    """Name -> value (as pycep gives it) of the function app's siteConfig.appSettings."""
    (site,) = resources_of_type(template, "Microsoft.Web/sites")
    entries = site["properties"]["siteConfig"]["appSettings"]
    names = [entry["name"] for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"app settings set twice: {duplicates}"
    return {entry["name"]: entry["value"] for entry in entries}


def azure_environment(app_settings: Mapping[str, Any]) -> dict[str, str]:
    """The app's environment in Azure as far as a test can know it: literal values as written, sample
    values where the Bicep computes one."""
    environment: dict[str, str] = {}
    for name, value in app_settings.items():
        if isinstance(value, str) and "${" not in value and name not in AZURE_SAMPLE_VALUES:
            environment[name] = value
        else:
            environment[name] = AZURE_SAMPLE_VALUES.get(name, "sample")
    return environment


def local_example_environment() -> dict[str, str]:
    values = json.loads(LOCAL_EXAMPLE_SETTINGS.read_text(encoding="utf-8"))["Values"]
    return {name: str(value) for name, value in values.items()}


class RecordingEnvironment(Mapping[str, str]):
    """A read-only environment that remembers every name looked up, present or not."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.looked_up: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.looked_up.add(name)
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.looked_up.add(name)
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("Settings.from_env listed the environment: settings must be read by name")

    def __len__(self) -> int:
        return len(self._values)


def settings_read(settings_class: SettingsClass, environments: Iterable[Mapping[str, str]]) -> set[str]:
    """Every name Settings.from_env looks up, over the given configurations (each must be valid)."""
    names, refusals = read_and_refusals(settings_class, environments)
    assert not refusals, refusals
    return names


def read_and_refusals(
    settings_class: SettingsClass, environments: Iterable[Mapping[str, str]]
) -> tuple[set[str], list[str]]:
    """Every name Settings.from_env looks up over the given configurations, and its refusals: a
    refused configuration still counts what was looked up before the refusal."""
    from shared.errors import ConfigurationError

    names: set[str] = set()
    refusals: list[str] = []
    for values in environments:
        recording = RecordingEnvironment(values)
        try:
            settings_class.from_env(recording)
        except ConfigurationError as error:
            refusals.append(error.message)
        names |= recording.looked_up
    return names, refusals


@dataclass(frozen=True)
class Coverage:
    read_not_set: list[str]  # the code reads it, the Bicep does not set it, and it is not exempt
    set_not_read: list[str]  # the Bicep sets it, neither the code nor the platform reads it
    refused: list[str]  # Settings.from_env refused the Azure configuration: why

    @property
    def problems(self) -> list[str]:
        return [
            *(f"the Azure app settings are refused by Settings.from_env: {r}" for r in self.refused),
            *(
                f"{n}: read by shared/settings.py, not set by the Bicep app settings"
                for n in self.read_not_set
            ),
            *(
                f"{n}: set by the Bicep app settings, read by neither the code nor the platform"
                for n in self.set_not_read
            ),
        ]


def coverage(settings_class: SettingsClass, app_settings: Mapping[str, Any]) -> Coverage:
    """Both directions of the settings contract, for this Settings class and these Bicep settings. The
    code's reads are recorded on the Azure configuration and on the local one (so a setting only the
    local stack reads is seen too)."""
    read, refused = read_and_refusals(settings_class, [azure_environment(app_settings)])
    read |= settings_read(settings_class, [local_example_environment()])
    bicep = set(app_settings)
    return Coverage(
        read_not_set=sorted(read - bicep - UNSET_IN_AZURE.keys()),
        set_not_read=sorted(bicep - read - PLATFORM_SETTINGS.keys()),
        refused=refused,
    )


def exported_names(shell_function: str, script: str) -> list[str]:
    """The variables `export NAME=...` (or `NAME=...` then `export NAME`) in one shell function."""
    match = re.search(rf"^{re.escape(shell_function)}\(\) \{{\n(.*?)^\}}", script, re.MULTILINE | re.DOTALL)
    assert match, f"no shell function {shell_function}()"
    body = match.group(1)
    return sorted(set(re.findall(r"^\s*export ([A-Za-z_][A-Za-z0-9_]*)", body, re.MULTILINE)))


def clean_environment() -> dict[str, str]:
    """The process environment without any Sluice or Functions setting, for subprocesses."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SLUICE_", "AZURE_", "AzureWebJobs", "APPLICATIONINSIGHTS_"))
    }
