#!/bin/sh
# azd postdeploy: the Event Grid subscription BlobCreated (ws-* containers, raw/ blobs) -> process_blob.
# It is a second deployment (modules/blob-created-subscription.bicep) because Event Grid validates an
# Azure Function destination when the subscription is created: the function must exist. Idempotent.
set -eu
SLUICE_ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
. "$SLUICE_ROOT/infra/hooks/env.sh"
load_azd_env
command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required, signed in (az login)"

# The host lists its functions shortly after the package lands.
attempt=1
until az functionapp function show --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_FUNCTION_APP_NAME" --function-name process_blob --output none 2>/dev/null; do
  [ "$attempt" -lt 20 ] || fail "process_blob is not listed on $AZURE_FUNCTION_APP_NAME; run azd deploy again"
  attempt=$((attempt + 1))
  sleep 15
done

az deployment group create --resource-group "$AZURE_RESOURCE_GROUP" --name blob-created-subscription \
  --template-file "$SLUICE_ROOT/infra/modules/blob-created-subscription.bicep" \
  --parameters systemTopicName="$AZURE_EVENTGRID_SYSTEM_TOPIC_NAME" \
  functionAppName="$AZURE_FUNCTION_APP_NAME" \
  storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
  deadLetterContainerName="$AZURE_DEADLETTER_CONTAINER_NAME" \
  --output none
echo "Event Grid: BlobCreated of ws-* containers -> $AZURE_FUNCTION_APP_NAME/process_blob"
