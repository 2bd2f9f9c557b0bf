#!/bin/sh
# azd postprovision: the database schema and the app's database user.
# 1. A temporary firewall rule for this machine's public address (removed on exit, even on failure).
# 2. `sluice db migrate` as the signed-in deployer, the server's Entra administrator: the same
#    migrations the tests run (shared/sql/tsql/V*.sql), idempotent.
# 3. The app identity's database user, a member of sluice_processor only (deploy.py grant-app-user).
# Needs: az (signed in), Python 3.11+, Microsoft ODBC Driver 18 for SQL Server.
set -eu
SLUICE_ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
. "$SLUICE_ROOT/infra/hooks/env.sh"
load_azd_env
command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required, signed in (az login)"
require_odbc_driver
ensure_venv

address="${SLUICE_DEPLOYER_IP:-}"
if [ -z "$address" ]; then
  address=$(curl -fsS --max-time 10 https://api.ipify.org) ||
    fail "could not find this machine's public address; set it: azd env set SLUICE_DEPLOYER_IP <address>"
fi
rule="azd-deployer-$(date +%s)"
remove_rule() {
  az sql server firewall-rule delete --resource-group "$AZURE_RESOURCE_GROUP" \
    --server "$AZURE_SQL_SERVER_NAME" --name "$rule" --output none || true
}
trap remove_rule EXIT
az sql server firewall-rule create --resource-group "$AZURE_RESOURCE_GROUP" \
  --server "$AZURE_SQL_SERVER_NAME" --name "$rule" \
  --start-ip-address "$address" --end-ip-address "$address" --output none

operator_settings
attempt=1
until "$SLUICE_VENV/bin/sluice" db migrate; do
  # A new firewall rule takes a moment; a paused serverless database takes up to a minute to resume.
  [ "$attempt" -lt 5 ] || fail "sluice db migrate failed"
  attempt=$((attempt + 1))
  sleep 20
done
PYTHONPATH="$SLUICE_ROOT" "$SLUICE_VENV/bin/python" "$SLUICE_ROOT/infra/hooks/deploy.py" grant-app-user
