"""The steps of the azd hooks that need Sluice's own code (the shell hooks beside this file call them).

    check-plans      preprovision: infra/plans.json (the app's SLUICE_PLANS) parses as the app will parse
                     it, and the lifecycle backstop (SLUICE_RAW_BACKSTOP_DAYS) lies beyond every plan's
                     raw window plus a margin
    grant-app-user   postprovision, after `sluice db migrate`: the app identity's database user, a member
                     of sluice_processor only (V0003__row_level_security.sql)

Input: the azd environment's values, which azd passes to hooks as environment variables. Run with the
repository root on PYTHONPATH (the hooks do)."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from shared.settings import PLANS_SETTING, Settings

PLANS_FILE = Path(__file__).resolve().parent.parent / "plans.json"
BACKSTOP_SETTING = "SLUICE_RAW_BACKSTOP_DAYS"
# main.bicep's default: premium's 365 days plus BACKSTOP_MARGIN_DAYS.
DEFAULT_BACKSTOP_DAYS = 372
# retention_timer deletes a day once all of it is past the window, so a blob the timer still keeps can
# be up to window + 1 days old; the margin also covers a timer that has not run for a few days.
BACKSTOP_MARGIN_DAYS = 7
# Settings.from_env needs a whole configuration; only SLUICE_PLANS matters here.
_PLACEHOLDER_ENV = {
    "SLUICE_STORAGE": "UseDevelopmentStorage=true",
    "SLUICE_SQL_DIALECT": "sqlite",
    "SLUICE_SQL_CONNECTION": ":memory:",
    "SLUICE_SECRETS_DIR": "unused",
}

APP_ROLE = "sluice_processor"
# A user-assigned identity's name: 3-128 letters, digits, hyphens and underscores.
_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")
# CREATE USER ... WITH OBJECT_ID names the identity's service principal directly, so the server needs no
# Microsoft Graph permission to resolve a display name. Both values are bound as parameters and quoted
# by the server (QUOTENAME); Python checks their form first as well.
GRANT_APP_USER = """\
SET NOCOUNT ON;
DECLARE @name sysname = ?, @object_id nvarchar(36) = ?, @sql nvarchar(max);
IF DATABASE_PRINCIPAL_ID(@name) IS NULL
BEGIN
    SET @sql = N'CREATE USER ' + QUOTENAME(@name)
        + N' FROM EXTERNAL PROVIDER WITH OBJECT_ID = ' + QUOTENAME(@object_id, N'''');
    EXEC sp_executesql @sql;
END;
IF IS_ROLEMEMBER(N'sluice_processor', @name) = 0
BEGIN
    SET @sql = N'ALTER ROLE sluice_processor ADD MEMBER ' + QUOTENAME(@name);
    EXEC sp_executesql @sql;
END;
SELECT IS_ROLEMEMBER(N'sluice_processor', @name);
"""
CONNECT_ATTEMPTS = 6  # a serverless database that is resuming refuses connections for up to a minute
CONNECT_PAUSE_SECONDS = 15.0


def check_plans(plans_json: str, env: Mapping[str, str]) -> list[str]:
    """What is wrong with the plans (SLUICE_PLANS' JSON) and SLUICE_RAW_BACKSTOP_DAYS, in words; empty
    when nothing is."""
    from shared.errors import ConfigurationError

    try:
        plans = Settings.from_env({**_PLACEHOLDER_ENV, PLANS_SETTING: plans_json}).plans
    except ConfigurationError as error:
        return [f"{PLANS_FILE.name}: {error.message}"]
    text = env.get(BACKSTOP_SETTING, "").strip() or str(DEFAULT_BACKSTOP_DAYS)
    if not text.isdigit():
        return [f"{BACKSTOP_SETTING}={text!r}: expected a whole number of days."]
    backstop = int(text)
    plan, limits = max(plans.items(), key=lambda item: item[1].raw_retention_days)
    needed = limits.raw_retention_days + BACKSTOP_MARGIN_DAYS
    if backstop < needed:
        return [
            f"{BACKSTOP_SETTING}={backstop}: the storage lifecycle rule would delete raw data that the "
            f"{plan} plan keeps {limits.raw_retention_days} days; raise it to at least {needed} "
            f"(azd env set {BACKSTOP_SETTING} {needed})."
        ]
    return []


def app_user_parameters(name: str, object_id: str) -> tuple[str, str]:
    """The identity's name and object id, checked: both end up in a CREATE USER statement."""
    if not _IDENTITY_NAME.fullmatch(name):
        raise ValueError(f"not a managed identity name: {name!r}")
    try:
        canonical = str(uuid.UUID(object_id))
    except ValueError:
        raise ValueError(f"not an object id: {object_id!r}") from None
    return name, canonical


def grant_app_user(env: Mapping[str, str]) -> None:
    """Signs in as the deploying principal (the server's Entra administrator: az or azd login) and makes
    the app identity a database user in sluice_processor, nothing more. Idempotent."""
    import pyodbc
    from azure.identity import DefaultAzureCredential

    from shared.sql.azure import EntraTokenConnector

    name, object_id = app_user_parameters(
        env["AZURE_APP_IDENTITY_NAME"], env["AZURE_APP_IDENTITY_PRINCIPAL_ID"]
    )
    connector = EntraTokenConnector(env["AZURE_SQL_CONNECTION_STRING"], DefaultAzureCredential())
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            connection = connector.connect()
            break
        except pyodbc.Error as error:
            if attempt == CONNECT_ATTEMPTS:
                raise
            print(f"database not reachable yet ({error.args[0]}); retrying", file=sys.stderr)
            time.sleep(CONNECT_PAUSE_SECONDS)
    try:
        cursor = connection.cursor()
        cursor.execute(GRANT_APP_USER, name, object_id)
        member = cursor.fetchone()
        connection.commit()
    finally:
        connection.close()
    if member is None or member[0] != 1:
        raise SystemExit(f"{name} is not a member of {APP_ROLE} after the grant")
    print(f"database user {name}: member of {APP_ROLE}")


def main(argv: Sequence[str]) -> int:
    command = argv[0] if argv else ""
    if command == "check-plans":
        problems = check_plans(PLANS_FILE.read_text(encoding="utf-8"), os.environ)
        for problem in problems:
            print(f"sluice: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if command == "grant-app-user":
        grant_app_user(os.environ)
        return 0
    print("usage: deploy.py check-plans | grant-app-user", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
