"""The app settings contract between infra/ and shared/settings.py, both ways: every setting the code's
Settings object reads is set by the Bicep app settings (or is an alternative Azure does not use, listed
with its reason), and every app setting the Bicep sets is read by the code (or by the platform, listed
with its reason). The check is shown to fail on modified copies of either side."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from shared.settings import Settings, SqlAuth, SqlDialect
from tests.infra.support import (
    FUNCTION_APP_BICEP,
    INFRA,
    PLATFORM_SETTINGS,
    REPO,
    UNSET_IN_AZURE,
    azure_environment,
    bicep_app_settings,
    clean_environment,
    coverage,
    exported_names,
    local_example_environment,
    parse_bicep,
    parse_bicep_text,
    settings_read,
)

SETTINGS_PY = REPO / "shared" / "settings.py"


def test_bicep_sets_every_setting_the_code_reads_and_nothing_else() -> None:
    result = coverage(Settings, bicep_app_settings(parse_bicep(FUNCTION_APP_BICEP)))
    assert not result.problems, "\n".join(result.problems)


def test_the_lists_of_exceptions_are_still_needed() -> None:
    app_settings = bicep_app_settings(parse_bicep(FUNCTION_APP_BICEP))
    read = settings_read(Settings, [azure_environment(app_settings), local_example_environment()])
    assert set(UNSET_IN_AZURE) <= read, "an exemption for a setting the code no longer reads"
    assert set(UNSET_IN_AZURE).isdisjoint(app_settings), "exempt from Azure, yet the Bicep sets it"
    assert set(PLATFORM_SETTINGS) <= set(app_settings), "a platform setting the Bicep no longer sets"
    assert set(PLATFORM_SETTINGS).isdisjoint(read), "a 'platform' setting that the code reads after all"


def test_the_azure_settings_make_a_valid_configuration_of_the_azure_kind() -> None:
    settings = Settings.from_env(azure_environment(bicep_app_settings(parse_bicep(FUNCTION_APP_BICEP))))
    assert settings.storage.connection_string is None
    assert settings.storage.credential == "managedidentity" and settings.storage.client_id
    assert settings.secrets.key_vault_uri and settings.secrets.local_dir is None
    assert (settings.sql_dialect, settings.sql_auth) == (SqlDialect.TSQL, SqlAuth.ENTRA)
    assert settings.trust_forwarded_client_cert is False
    assert settings.tokens is not None


# --- the check fails when either side changes: modified copies ----------------------------------------


def _bicep_without(tmp_path: Path, setting: str) -> Path:
    lines = FUNCTION_APP_BICEP.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if f"name: '{setting}'" not in line]
    assert len(kept) == len(lines) - 1, f"{setting} is not set exactly once"
    copy = tmp_path / FUNCTION_APP_BICEP.name
    copy.write_text("".join(kept), encoding="utf-8")
    return copy


@pytest.fixture
def settings_copy(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A copy of shared/settings.py to modify, and the module name to load it under."""
    copy = tmp_path / "settings_copy.py"
    copy.write_text(SETTINGS_PY.read_text(encoding="utf-8"), encoding="utf-8")
    name = f"sluice_settings_copy_{id(copy)}"
    yield copy, name
    sys.modules.pop(name, None)


def _load(copy: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, copy)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _edit(copy: Path, old: str, new: str) -> None:
    text = copy.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"shared/settings.py changed: update this test's edit of {old!r}"
    copy.write_text(text.replace(old, new), encoding="utf-8")


def test_removing_a_setting_from_the_bicep_fails_the_check(tmp_path: Path) -> None:
    modified = bicep_app_settings(
        parse_bicep_text(_bicep_without(tmp_path, "SLUICE_KEY_VAULT_URI").read_text())
    )
    result = coverage(Settings, modified)
    assert result.read_not_set == ["SLUICE_KEY_VAULT_URI"]
    assert result.set_not_read == []
    assert any("SLUICE_KEY_VAULT_URI" in refusal for refusal in result.refused)  # and the app would not start


def test_removing_an_optional_setting_from_the_bicep_fails_the_check_too(tmp_path: Path) -> None:
    modified = bicep_app_settings(parse_bicep_text(_bicep_without(tmp_path, "SLUICE_LOG_LEVEL").read_text()))
    result = coverage(Settings, modified)
    assert (result.read_not_set, result.set_not_read, result.refused) == (["SLUICE_LOG_LEVEL"], [], [])


def test_a_setting_the_code_stops_reading_fails_the_check(settings_copy: tuple[Path, str]) -> None:
    copy, name = settings_copy
    _edit(copy, "env.get(LOG_LEVEL_SETTING, DEFAULT_LOG_LEVEL)", "DEFAULT_LOG_LEVEL")
    result = coverage(_load(copy, name).Settings, bicep_app_settings(parse_bicep(FUNCTION_APP_BICEP)))
    assert result.set_not_read == ["SLUICE_LOG_LEVEL"]
    assert result.read_not_set == []


def test_a_setting_the_code_starts_reading_fails_the_check(settings_copy: tuple[Path, str]) -> None:
    copy, name = settings_copy
    _edit(
        copy,
        "log_level=_log_level(env),",
        'log_level=_log_level(env) if env.get("SLUICE_NEW_SETTING") is None else "DEBUG",',
    )
    result = coverage(_load(copy, name).Settings, bicep_app_settings(parse_bicep(FUNCTION_APP_BICEP)))
    assert result.read_not_set == ["SLUICE_NEW_SETTING"]


# --- the operators' environment (infra/sluice-azure, the hooks) --------------------------------------


def test_the_operator_environment_sets_every_setting_the_code_reads() -> None:
    """So a local.settings.json in the operator's folder, which `sluice` also reads, fills in nothing."""
    exported = exported_names("operator_settings", (INFRA / "hooks" / "env.sh").read_text(encoding="utf-8"))
    app_settings = bicep_app_settings(parse_bicep(FUNCTION_APP_BICEP))
    read = settings_read(Settings, [azure_environment(app_settings), local_example_environment()])
    assert sorted(read - set(exported)) == []
    assert sorted(set(exported) - read) == []


def test_the_operator_environment_wins_over_a_local_settings_file(tmp_path: Path) -> None:
    """The CLI's way of loading settings, run in a folder whose local.settings.json points at Azurite
    and the local secret store: the operator still acts on Azure."""
    (tmp_path / "local.settings.json").write_text(
        (REPO / "local.settings.example.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    env = {
        **clean_environment(),
        "SLUICE_ROOT": str(REPO),
        "AZURE_STORAGE_BLOB_ENDPOINT": "https://stsample.blob.core.windows.net/",
        "AZURE_STORAGE_TABLE_ENDPOINT": "https://stsample.table.core.windows.net/",
        "AZURE_SQL_CONNECTION_STRING": "Driver={ODBC Driver 18 for SQL Server};Server=tcp:s,1433;Database=d",
        "AZURE_KEY_VAULT_URI": "https://kv-sample.vault.azure.net/",
    }
    probe = (
        "from shared.localsettings import load_local_settings; load_local_settings('local.settings.json'); "
        "from shared.settings import Settings; s = Settings.from_env(); "
        "print(s.storage.connection_string, s.storage.blob_service_uri, s.secrets.local_dir, "
        "s.secrets.key_vault_uri, s.sql_dialect.value, s.sql_auth.value, s.tokens)"
    )
    script = (
        f'. "$SLUICE_ROOT/infra/hooks/env.sh" && operator_settings && exec "{sys.executable}" -c "{probe}"'
    )
    result = subprocess.run(
        [shutil.which("sh") or "/bin/sh", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "None",
        "https://stsample.blob.core.windows.net/",
        "None",
        "https://kv-sample.vault.azure.net/",
        "tsql",
        "entra",
        "None",
    ]


def test_sluice_azure_runs_the_cli_with_the_azd_environment(tmp_path: Path) -> None:
    """infra/sluice-azure end to end, offline: a stand-in `azd` prints the environment's values."""
    fake_azd = tmp_path / "bin" / "azd"
    fake_azd.parent.mkdir()
    fake_azd.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "env get-values" ] || exit 2\n'
        "echo 'AZURE_STORAGE_BLOB_ENDPOINT=\"https://stsample.blob.core.windows.net/\"'\n"
        "echo 'AZURE_STORAGE_TABLE_ENDPOINT=\"https://stsample.table.core.windows.net/\"'\n"
        "echo 'AZURE_SQL_CONNECTION_STRING=\"Driver={ODBC Driver 18 for SQL Server};Server=tcp:s,1433\"'\n"
        "echo 'AZURE_KEY_VAULT_URI=\"https://kv-sample.vault.azure.net/\"'\n",
        encoding="utf-8",
    )
    fake_azd.chmod(0o755)
    env = clean_environment()
    env["PATH"] = f"{fake_azd.parent}:{env.get('PATH', '')}"
    key = "c2x1aWNlLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmctLS0tLQ=="
    result = subprocess.run(
        [str(INFRA / "sluice-azure"), "sign", "--workspace", "00000000-0000-0000-0000-00000000000a",
         "--key", key, "--log-type", "MyApp", "--body", "[]"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Authorization: SharedKey 00000000-0000-0000-0000-00000000000a:")
