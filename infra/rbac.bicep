// Every role assignment of the deployment, in one place, each at the narrowest scope that works.
//
// The app identity (user-assigned, shared by every function):
// - host account: Storage Blob Data Owner (what the Functions host requires for AzureWebJobsStorage:
//   locks, timer state, keys; and the Flex deployment package). No queue or table role: the host uses
//   neither for HTTP, Event Grid and timer triggers.
// - data account: Storage Blob Data Contributor (write and read raw blobs, move poison ones to
//   quarantine/, retention deletes, a removed workspace's container) and Storage Table Data Contributor
//   (registry, agents, replay guard, audit appends, daily counters, diagnostics sources).
// - Key Vault: Key Vault Secrets Officer. The functions read workspace keys (WorkspaceDirectory, agent
//   enrollment, diagnostics SAS), and retention_timer deletes the keys of a deleted workspace once its
//   grace period is over (shared/retention.py, Retention.remove): deleting is writing, so Secrets User
//   (read only) is not enough. No built-in role reads and deletes without also setting; a custom role
//   (get + delete) would need the deployer to hold roleDefinitions/write and outlives `azd down`, and
//   setting adds little for an identity that can already read and delete every key. Keys are created
//   and rotated by the operators' CLI (`sluice workspace create / rotate-key`, `sluice diag
//   add-source`) with the operator's identity, not by the app. Soft delete and purge protection keep
//   every deleted key recoverable (90 days by default). tests/infra/test_contracts.py re-derives this
//   from the code: should the app stop deleting secrets, it asks for Key Vault Secrets User again.
// - Application Insights: Monitoring Metrics Publisher (Entra-authenticated telemetry).
// - Azure SQL: no Azure role; a database user in sluice_processor, created by infra/hooks/postprovision.sh.
//
// The deploying user (optional, principalId): the operator who runs `sluice` against this deployment
// (infra/sluice-azure): Key Vault Secrets Officer (writes workspace keys), Storage Blob Data
// Contributor (creates ws-* containers) and Storage Table Data Contributor on the data account. Nothing
// on the host account. The same principal is the SQL server's Entra administrator (sql.bicep).
//
// The Event Grid system topic's identity: Storage Blob Data Contributor on the dead-letter container.
param hostStorageAccountName string
param dataStorageAccountName string
param deadLetterContainerName string
param keyVaultName string
param appInsightsName string
param appPrincipalId string
param systemTopicPrincipalId string
@description('The deploying user (optional): the operator roles above.')
param userPrincipalId string = ''
@allowed(['User', 'Group', 'ServicePrincipal'])
param userPrincipalType string = 'User'

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
var dataRoles = [roles.storageBlobDataContributor, roles.storageTableDataContributor]

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageAccountName

  resource blobs 'blobServices' existing = {
    name: 'default'

    resource deadLetters 'containers' existing = {
      name: deadLetterContainerName
    }
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource appHostStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
  }
}

resource appDataStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in dataRoles: {
    name: guid(dataStorage.id, appPrincipalId, role)
    scope: dataStorage
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

resource appSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
  }
}

resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage::blobs::deadLetters.id, systemTopicPrincipalId, roles.storageBlobDataContributor)
  scope: dataStorage::blobs::deadLetters
  properties: {
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

resource operatorDataStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in dataRoles: if (!empty(userPrincipalId)) {
    name: guid(dataStorage.id, userPrincipalId, role)
    scope: dataStorage
    properties: {
      principalId: userPrincipalId
      principalType: userPrincipalType
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

resource operatorSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: userPrincipalId
    principalType: userPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
  }
}
