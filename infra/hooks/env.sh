# Sourced (POSIX sh) by the azd hooks beside this file and by infra/sluice-azure, which set SLUICE_ROOT
# (the repository) first.

SLUICE_VENV="$SLUICE_ROOT/.venv"

fail() {
  echo "sluice: $*" >&2
  exit 1
}

# The azd environment's values (Bicep outputs, `azd env set` values) as exported variables. azd passes
# them to hooks already; reading them again lets infra/sluice-azure run outside a hook too. None is a
# secret: the deployment has no keys or passwords to output.
load_azd_env() {
  command -v azd >/dev/null 2>&1 || fail "the Azure Developer CLI (azd) is required"
  values=$(cd "$SLUICE_ROOT" && azd env get-values) || fail "no azd environment: run azd up first"
  set -a
  eval "$values"
  set +a
}

# A Python 3.11+ interpreter for steps that need only the standard library and the repository.
system_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  fail "Python 3.11 or later is required"
}

# .venv with the runtime requirements and the project (the sluice command): the same one `make`
# creates; created here when missing, completed when it lacks the runtime requirements.
ensure_venv() {
  if ! "$SLUICE_VENV/bin/python" -c 'import azure.identity, pyodbc, shared.sql.azure' >/dev/null 2>&1; then
    [ -x "$SLUICE_VENV/bin/python" ] || "$(system_python)" -m venv "$SLUICE_VENV"
    "$SLUICE_VENV/bin/python" -m pip install --quiet -r "$SLUICE_ROOT/requirements.txt"
    "$SLUICE_VENV/bin/python" -m pip install --quiet --no-deps -e "$SLUICE_ROOT"
  fi
}

# Microsoft's ODBC Driver 18, which pyodbc needs for Azure SQL (it is on the Functions images already).
require_odbc_driver() {
  odbcinst -q -d -n "ODBC Driver 18 for SQL Server" >/dev/null 2>&1 ||
    fail "Microsoft ODBC Driver 18 for SQL Server is required on this machine: https://learn.microsoft.com/sql/connect/odbc/download-odbc-driver-for-sql-server"
}

# The settings the sluice CLI needs to act on this deployment as the signed-in operator: identity-based
# storage and Key Vault through DefaultAzureCredential (az or azd login), Azure SQL with an Entra token.
# Every setting the code reads (shared/settings.py) is exported, empty where Azure does not use it, so
# a local.settings.json in the current folder (which sluice reads for what is unset) fills in nothing;
# tests/infra/test_settings_coverage.py holds this list to the code.
operator_settings() {
  export SLUICE_STORAGE=""
  export SLUICE_STORAGE__blobServiceUri="${AZURE_STORAGE_BLOB_ENDPOINT:?run azd provision first}"
  export SLUICE_STORAGE__tableServiceUri="${AZURE_STORAGE_TABLE_ENDPOINT:?run azd provision first}"
  export SLUICE_STORAGE__credential="default"
  export SLUICE_STORAGE__clientId=""
  export SLUICE_SQL_DIALECT="tsql"
  export SLUICE_SQL_AUTH="entra"
  export SLUICE_SQL_CONNECTION="${AZURE_SQL_CONNECTION_STRING:?run azd provision first}"
  export SLUICE_SQL_CONNECTION_SECRET=""
  export SLUICE_SECRETS_DIR=""
  export SLUICE_KEY_VAULT_URI="${AZURE_KEY_VAULT_URI:?run azd provision first}"
  export SLUICE_TRUST_FORWARDED_CLIENT_CERT="false"
  export SLUICE_TOKEN_ISSUER=""
  export SLUICE_TOKEN_JWKS_URI=""
  SLUICE_PLANS=$(cat "$SLUICE_ROOT/infra/plans.json")
  export SLUICE_PLANS
  export SLUICE_LOG_LEVEL="${SLUICE_LOG_LEVEL:-INFO}"
  export SLUICE_WORKSPACE_DELETE_GRACE_DAYS="${SLUICE_WORKSPACE_DELETE_GRACE_DAYS:-}"
  export APPLICATIONINSIGHTS_CONNECTION_STRING=""
}
