"""The one typed settings object, read once from the environment (App Settings in Azure,
`local.settings.json` Values locally). A missing or malformed setting fails at start with its name."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, TypeVar

from shared.errors import ConfigurationError
from shared.plans import PLAN_LIMITS, Plan, PlanLimits
from shared.rawstore import MAX_BODY_BYTES

STORAGE_SETTING = "SLUICE_STORAGE"
SQL_DIALECT_SETTING = "SLUICE_SQL_DIALECT"
SQL_CONNECTION_SETTING = "SLUICE_SQL_CONNECTION"
SQL_AUTH_SETTING = "SLUICE_SQL_AUTH"
SQL_CONNECTION_SECRET_SETTING = "SLUICE_SQL_CONNECTION_SECRET"  # noqa: S105 - a setting name, not a secret
SECRETS_DIR_SETTING = "SLUICE_SECRETS_DIR"
KEY_VAULT_SETTING = "SLUICE_KEY_VAULT_URI"
TRUST_CLIENT_CERT_SETTING = "SLUICE_TRUST_FORWARDED_CLIENT_CERT"
TOKEN_ISSUER_SETTING = "SLUICE_TOKEN_ISSUER"  # noqa: S105 - a setting name, not a secret
TOKEN_JWKS_SETTING = "SLUICE_TOKEN_JWKS_URI"  # noqa: S105 - a setting name, not a secret
LOG_LEVEL_SETTING = "SLUICE_LOG_LEVEL"
DELETE_GRACE_SETTING = "SLUICE_WORKSPACE_DELETE_GRACE_DAYS"
PLANS_SETTING = "SLUICE_PLANS"
APPINSIGHTS_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"

DEFAULT_LOG_LEVEL = "INFO"
# As Log Analytics' soft delete: a deleted workspace's data stays recoverable this long, then goes.
DEFAULT_DELETE_GRACE_DAYS = 14
# The least value of each PlanLimits field SLUICE_PLANS may set. A burst must hold one post of the
# largest size ingest accepts, or such a post would be refused for good; a rate must refill; a window
# of 0 days would delete data on the day it arrives. A cap of 0 stops ingestion, and null means no cap.
PLAN_FIELD_MINIMUMS: dict[str, int] = {
    "raw_retention_days": 1,
    "daily_cap_bytes": 0,
    "ingestion_rate_bytes_per_second": 1,
    "ingestion_burst_bytes": MAX_BODY_BYTES,
}
NULLABLE_PLAN_FIELDS = frozenset({"daily_cap_bytes"})
# Key Vault's rule for secret names (the local store enforces the same), checked at start rather than
# on the first connection, where a refusal would read as an unavailable database and be retried.
_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
# Azure's own development-storage shortcut, which the Azure SDKs do not expand themselves.
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{AZURITE_ACCOUNT};"
    f"QueueEndpoint=http://127.0.0.1:10001/{AZURITE_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{AZURITE_ACCOUNT};"
)


Choice = TypeVar("Choice", bound=StrEnum)


class SqlDialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"
    TSQL = "tsql"


class SqlAuth(StrEnum):
    """How the app signs in to the database (shared.sql.azure)."""

    CONNECTION_STRING = "connection-string"  # SLUICE_SQL_CONNECTION carries everything (local, tests)
    ENTRA = "entra"  # SLUICE_SQL_CONNECTION has no credentials; an Entra token of the app's identity
    # The whole connection string, UID/PWD included, is a secret in the secret store.
    SECRET = "secret"  # noqa: S105 - a mode name, not a secret


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """Either a connection string (Azurite, keys) or identity-based service URIs, as the Functions
    host defines them for a connection named `SLUICE_STORAGE` (`SLUICE_STORAGE__blobServiceUri`...)."""

    connection_string: str | None = None
    blob_service_uri: str | None = None
    table_service_uri: str | None = None
    credential: Literal["managedidentity", "default"] = "default"
    client_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class SecretsSettings:
    """Key Vault in Azure; a local folder for the local stack. Exactly one is set."""

    key_vault_uri: str | None = None
    local_dir: str | None = None


@dataclass(frozen=True, kw_only=True)
class TokenSettings:
    """Who may issue bearer tokens for the Logs Ingestion API: Entra ID's issuer and its JWKS in Azure.
    A JWKS that is a local file path is the development issuer of the local stack."""

    issuer: str
    jwks_uri: str


@dataclass(frozen=True, kw_only=True)
class Settings:
    storage: StorageSettings
    sql_dialect: SqlDialect
    sql_connection: str  # empty with SqlAuth.SECRET: the string is then read from the secret store
    secrets: SecretsSettings
    sql_auth: SqlAuth = SqlAuth.CONNECTION_STRING
    sql_connection_secret: str | None = None  # the secret's name, with SqlAuth.SECRET only
    # Honour X-ARR-ClientCert only where the platform sets it and strips clients' copies (App Service
    # with client certificates on, the local host); anywhere else the header could be forged.
    trust_forwarded_client_cert: bool = False
    tokens: TokenSettings | None = None
    log_level: str = DEFAULT_LOG_LEVEL
    appinsights_connection_string: str | None = None
    workspace_delete_grace_days: int = DEFAULT_DELETE_GRACE_DAYS
    plans: Mapping[Plan, PlanLimits] = field(default_factory=lambda: MappingProxyType(PLAN_LIMITS))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        dialect = _dialect(env)
        sql_auth, sql_connection, sql_connection_secret = _sql_connection(env, dialect)
        return cls(
            storage=_storage(env),
            sql_dialect=dialect,
            sql_connection=sql_connection,
            secrets=_secrets(env),
            sql_auth=sql_auth,
            sql_connection_secret=sql_connection_secret,
            trust_forwarded_client_cert=_bool(env, TRUST_CLIENT_CERT_SETTING),
            tokens=_tokens(env),
            log_level=_log_level(env),
            appinsights_connection_string=env.get(APPINSIGHTS_SETTING) or None,
            workspace_delete_grace_days=_days(env, DELETE_GRACE_SETTING, DEFAULT_DELETE_GRACE_DAYS),
            plans=_plans(env),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"Missing setting {name}.")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    value = env.get(LOG_LEVEL_SETTING, DEFAULT_LOG_LEVEL).strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigurationError(
            f"Setting {LOG_LEVEL_SETTING}={value!r}: expected DEBUG, INFO, WARNING or ERROR."
        )
    return value


def _days(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ConfigurationError(f"Setting {name}={value!r}: expected a whole number of days.")
    return int(value)


def _plans(env: Mapping[str, str]) -> Mapping[Plan, PlanLimits]:
    """shared.plans' limits, with SLUICE_PLANS' overrides: a JSON object of plan name to an object of
    PlanLimits fields, e.g. `{"free": {"daily_cap_bytes": 1073741824}}`; fields not named keep theirs."""
    value = env.get(PLANS_SETTING, "").strip()
    if not value:
        return MappingProxyType(PLAN_LIMITS)
    try:
        document = json.loads(value)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"Setting {PLANS_SETTING} is not valid JSON: {error}.") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"Setting {PLANS_SETTING} must be a JSON object of plan name to limits.")
    plans = dict(PLAN_LIMITS)
    for name, overrides in document.items():
        plan = _one_of(Plan, name, where=f"{PLANS_SETTING} plan")
        if not isinstance(overrides, dict):
            raise ConfigurationError(f"Setting {PLANS_SETTING} {name}: expected a JSON object of limits.")
        for limit, number in overrides.items():
            _check_plan_limit(f"{name}.{limit}", limit, number)
        plans[plan] = replace(plans[plan], **overrides)
    return MappingProxyType(plans)


def _check_plan_limit(where: str, limit: str, number: object) -> None:
    if limit not in PLAN_FIELD_MINIMUMS:
        allowed = ", ".join(f.name for f in fields(PlanLimits))
        raise ConfigurationError(f"Setting {PLANS_SETTING}: unknown limit {where}; expected {allowed}.")
    if number is None and limit in NULLABLE_PLAN_FIELDS:
        return
    minimum = PLAN_FIELD_MINIMUMS[limit]
    # bool is an int to Python, not to an operator writing true.
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum:
        nullable = " or null" if limit in NULLABLE_PLAN_FIELDS else ""
        raise ConfigurationError(
            f"Setting {PLANS_SETTING} {where}={json.dumps(number)}: expected a whole number of at least "
            f"{minimum}{nullable}."
        )


def _bool(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise ConfigurationError(f"Setting {name}={value!r}: expected true or false.")
    return value in ("true", "1")


def _secrets(env: Mapping[str, str]) -> SecretsSettings:
    vault = env.get(KEY_VAULT_SETTING, "").strip()
    local = env.get(SECRETS_DIR_SETTING, "").strip()
    if bool(vault) == bool(local):
        raise ConfigurationError(
            f"Set exactly one of {KEY_VAULT_SETTING} (Key Vault) or {SECRETS_DIR_SETTING} (local store)."
        )
    if vault and not vault.startswith("https://"):
        raise ConfigurationError(f"Setting {KEY_VAULT_SETTING} must be an https:// vault URI.")
    return SecretsSettings(key_vault_uri=vault or None, local_dir=local or None)


def _tokens(env: Mapping[str, str]) -> TokenSettings | None:
    issuer = env.get(TOKEN_ISSUER_SETTING, "").strip()
    jwks = env.get(TOKEN_JWKS_SETTING, "").strip()
    if not issuer and not jwks:
        return None  # the Logs Ingestion API then refuses every token
    if not issuer or not jwks:
        raise ConfigurationError(f"Set both {TOKEN_ISSUER_SETTING} and {TOKEN_JWKS_SETTING}, or neither.")
    return TokenSettings(issuer=issuer, jwks_uri=jwks)


def _dialect(env: Mapping[str, str]) -> SqlDialect:
    return _one_of(SqlDialect, _required(env, SQL_DIALECT_SETTING).lower(), where=SQL_DIALECT_SETTING)


def _one_of(kind: type[Choice], value: str, *, where: str) -> Choice:
    """The member of `kind` named `value`; `where` names the setting (and the place in it) for the error."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ConfigurationError(f"Setting {where}={value!r}: expected one of {allowed}.") from None


def _sql_connection(env: Mapping[str, str], dialect: SqlDialect) -> tuple[SqlAuth, str, str | None]:
    """(how to sign in, the connection string, the name of the secret holding it): exactly one source
    of the connection string is set, so no one edits a setting the app does not read."""
    value = env.get(SQL_AUTH_SETTING, SqlAuth.CONNECTION_STRING.value).strip().lower()
    auth = _one_of(SqlAuth, value, where=SQL_AUTH_SETTING)
    secret = env.get(SQL_CONNECTION_SECRET_SETTING, "").strip()
    if auth is SqlAuth.ENTRA and dialect is not SqlDialect.TSQL:
        # The token goes in SQL_COPT_SS_ACCESS_TOKEN, an attribute of Microsoft's ODBC driver only.
        raise ConfigurationError(f"Setting {SQL_AUTH_SETTING}=entra needs {SQL_DIALECT_SETTING}=tsql.")
    if auth is not SqlAuth.SECRET:
        if secret:
            raise ConfigurationError(
                f"Setting {SQL_CONNECTION_SECRET_SETTING} is read only with {SQL_AUTH_SETTING}=secret."
            )
        return auth, _required(env, SQL_CONNECTION_SETTING), None
    if dialect is SqlDialect.SQLITE:
        raise ConfigurationError(f"Setting {SQL_AUTH_SETTING}=secret needs an ODBC {SQL_DIALECT_SETTING}.")
    if env.get(SQL_CONNECTION_SETTING, "").strip():
        raise ConfigurationError(
            f"With {SQL_AUTH_SETTING}=secret the connection string is the secret "
            f"{SQL_CONNECTION_SECRET_SETTING} names; remove {SQL_CONNECTION_SETTING}."
        )
    if not _SECRET_NAME.fullmatch(secret):
        raise ConfigurationError(
            f"Setting {SQL_CONNECTION_SECRET_SETTING}={secret!r}: expected a secret name "
            "(1-127 letters, digits and dashes)."
        )
    return auth, "", secret


def _storage(env: Mapping[str, str]) -> StorageSettings:
    connection_string = env.get(STORAGE_SETTING, "").strip()
    if connection_string:
        if connection_string == DEVELOPMENT_STORAGE:
            connection_string = AZURITE_CONNECTION_STRING
        return StorageSettings(connection_string=connection_string)
    blob_uri = env.get(f"{STORAGE_SETTING}__blobServiceUri", "").strip()
    table_uri = env.get(f"{STORAGE_SETTING}__tableServiceUri", "").strip()
    if not blob_uri or not table_uri:
        raise ConfigurationError(
            f"Missing setting {STORAGE_SETTING} (a connection string) or "
            f"{STORAGE_SETTING}__blobServiceUri and {STORAGE_SETTING}__tableServiceUri (identity-based)."
        )
    credential = env.get(f"{STORAGE_SETTING}__credential", "default").strip().lower()
    if credential not in ("managedidentity", "default"):
        raise ConfigurationError(
            f"Setting {STORAGE_SETTING}__credential={credential!r}: expected managedidentity or default."
        )
    return StorageSettings(
        blob_service_uri=blob_uri,
        table_service_uri=table_uri,
        credential="managedidentity" if credential == "managedidentity" else "default",
        client_id=env.get(f"{STORAGE_SETTING}__clientId") or None,
    )
