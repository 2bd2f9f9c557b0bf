// A StorageV2 account reached with Microsoft Entra identities only: no shared keys (so no SAS and no
// connection strings), no anonymous blob access, HTTPS with TLS 1.2, infrastructure (double)
// encryption, blob and container soft delete. main.bicep uses it twice:
// - the Functions host's account (AzureWebJobsStorage: host locks, timer state, function keys, and
//   the Flex Consumption deployment package);
// - the data account (SLUICE_STORAGE: one ws-{workspace} container per tenant, created by
//   `sluice workspace create`; the registry, agent, audit... tables; the Event Grid dead letters).
// Two accounts, so that the operators' data roles never reach the host's keys or the code package.
param name string
param location string
param tags object
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS', 'Standard_RAGRS', 'Standard_RAGZRS'])
param skuName string
@description('Blob containers to create (private).')
param containers array = []
@description('Tables to create.')
param tables array = []
@description('The lifecycle backstop: blobs in ws-* containers older than this many days are deleted. 0: no rule.')
param rawBackstopDays int = 0
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35: Flex Consumption without a virtual network reaches storage from shared, changing outbound addresses, so the network rule stays Allow; every request needs a Microsoft Entra token and an RBAC role (shared keys are off). Private endpoints are a follow-up (they need VNet integration and cost per endpoint).
  //checkov:skip=CKV_AZURE_59: public network access stays enabled for the reason given for CKV_AZURE_35; anonymous access is off (allowBlobPublicAccess: false) and every container is private.
  //checkov:skip=CKV_AZURE_206: zone-redundant (ZRS) by default for the data account and locally redundant for the host's account (host state, and a package `azd deploy` writes again); geo-replication doubles the price and is a per-deployment choice: set SLUICE_DATA_STORAGE_SKU=Standard_GZRS.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: skuName }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices' // Event Grid writes dead letters with its identity
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: softDeleteDays }
    containerDeleteRetentionPolicy: { enabled: true, days: softDeleteDays }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in containers: {
    parent: blobService
    name: container
    properties: { publicAccess: 'None' }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource storageTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in tables: {
    parent: tableService
    name: table
  }
]

// The backstop behind retention_timer, which stays the primary mechanism (per plan, per day, audited).
// Lifecycle prefixes cannot express ws-*/raw/, so the rule covers every blob of every ws-* container:
// raw/ and quarantine/, nothing else lives there. Its age is set beyond the longest plan window plus
// a margin (infra/hooks/deploy.py check-plans refuses an infra/plans.json window it would cut into).
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (rawBackstopDays > 0) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'raw-retention-backstop'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['ws-']
            }
            actions: {
              baseBlob: {
                delete: { daysAfterModificationGreaterThan: rawBackstopDays }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
