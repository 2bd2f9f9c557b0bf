"""Settings fail fast with the missing name; every error has one status and a distinct code."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from azure.identity import ManagedIdentityCredential

import shared
from shared import errors
from shared.errors import ConfigurationError, http_status
from shared.runtime import telemetry_credential
from shared.settings import AZURITE_CONNECTION_STRING, Settings, SqlDialect

BASE = {
    "SLUICE_STORAGE": "UseDevelopmentStorage=true",
    "SLUICE_SQL_DIALECT": "sqlite",
    "SLUICE_SQL_CONNECTION": ".local/x.db",
    "SLUICE_SECRETS_DIR": ".local/secrets",
}


def test_given_local_values_when_reading_then_typed_settings() -> None:
    settings = Settings.from_env(BASE)
    assert settings.sql_dialect is SqlDialect.SQLITE
    assert settings.storage.connection_string == AZURITE_CONNECTION_STRING
    assert settings.log_level == "INFO"


@pytest.mark.parametrize("missing", ["SLUICE_SQL_DIALECT", "SLUICE_SQL_CONNECTION", "SLUICE_SECRETS_DIR"])
def test_given_missing_setting_when_reading_then_error_names_it(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigurationError, match=missing):
        Settings.from_env(env)


def test_given_no_storage_when_reading_then_error_names_both_forms() -> None:
    env = {k: v for k, v in BASE.items() if k != "SLUICE_STORAGE"}
    with pytest.raises(ConfigurationError, match="SLUICE_STORAGE__blobServiceUri"):
        Settings.from_env(env)


def test_given_identity_connection_when_reading_then_service_uris_and_client_id() -> None:
    env = {k: v for k, v in BASE.items() if k != "SLUICE_STORAGE"} | IDENTITY_STORAGE
    storage = Settings.from_env(env).storage
    assert storage.connection_string is None
    assert (storage.credential, storage.client_id) == ("managedidentity", "client-guid")


IDENTITY_STORAGE = {
    "SLUICE_STORAGE__blobServiceUri": "https://acct.blob.core.windows.net",
    "SLUICE_STORAGE__tableServiceUri": "https://acct.table.core.windows.net",
    "SLUICE_STORAGE__credential": "managedidentity",
    "SLUICE_STORAGE__clientId": "client-guid",
}
APP_INSIGHTS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000"
}


def test_given_identity_storage_and_app_insights_then_telemetry_is_sent_as_the_app_identity() -> None:
    env = {k: v for k, v in BASE.items() if k != "SLUICE_STORAGE"} | IDENTITY_STORAGE | APP_INSIGHTS

    credential = telemetry_credential(Settings.from_env(env))

    assert isinstance(credential, ManagedIdentityCredential)


@pytest.mark.parametrize("extra", [{}, APP_INSIGHTS], ids=["no Application Insights", "connection string"])
def test_given_no_identity_or_no_app_insights_then_telemetry_has_no_credential(extra: dict[str, str]) -> None:
    assert telemetry_credential(Settings.from_env(BASE | extra)) is None


def test_given_unknown_dialect_when_reading_then_allowed_values_listed() -> None:
    with pytest.raises(ConfigurationError, match="sqlite, postgresql, tsql"):
        Settings.from_env(BASE | {"SLUICE_SQL_DIALECT": "oracle"})


def all_error_classes() -> list[type[errors.SluiceError]]:
    # Import every module of the package first, so an error class defined anywhere is found.
    for module in pkgutil.walk_packages(shared.__path__, "shared."):
        importlib.import_module(module.name)
    found = [errors.SluiceError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


def test_given_every_error_class_then_it_lives_in_the_one_error_module() -> None:
    assert {c.__module__ for c in all_error_classes()} == {errors.__name__}


def test_given_error_tree_when_mapping_then_codes_distinct_and_client_errors_4xx() -> None:
    classes = all_error_classes()
    # Subclasses that only refine the cause (StorageUnavailable...) share their parent's code.
    codes = [c.code for c in classes if "code" in vars(c)]
    assert len(codes) == len(set(codes))
    for cls in classes:
        status = http_status(cls("x"))
        if issubclass(cls, errors.RequestRejected):
            assert 400 <= status < 500, cls
    assert http_status(errors.StorageUnavailable("x")) == 503
    assert errors.StorageUnavailable("x").retry_after_seconds
