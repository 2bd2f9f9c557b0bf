// The function app: Flex Consumption (Linux, Python 3.11), one user-assigned identity for everything it
// reaches (storage, Key Vault, Azure SQL, Application Insights), identity-based connections only.
// The app settings below are exactly what the code's Settings object reads (shared/settings.py) plus the
// platform's own; tests/infra/test_settings_coverage.py holds both lists to that.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
@description('The Functions host account (AzureWebJobsStorage and the deployment package).')
param hostStorageAccountName string
param deploymentContainerName string
param dataBlobEndpoint string
param dataTableEndpoint string
param keyVaultUri string
param sqlConnectionString string
param appInsightsConnectionString string
@description('Issuer of the Logs Ingestion API bearer tokens (Entra ID).')
param tokenIssuer string
param tokenJwksUri string
@description('SLUICE_PLANS: JSON overrides of shared/plans.py (infra/plans.json), empty for the built-in plans.')
param plans string
@allowed(['DEBUG', 'INFO', 'WARNING', 'ERROR'])
param logLevel string
@minValue(0)
param workspaceDeleteGraceDays int
@description('Incoming TLS client certificates (Optional mode) and trusting X-ARR-ClientCert: on together or not at all. Off on Flex Consumption, where agents authenticate with the client assertion.')
param clientCertificates bool = false
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225: a Flex Consumption plan scales to zero and back on demand; zone redundancy for it is region-dependent, and this template deploys to any Flex region. The app keeps no state on its instances.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222: this is a public ingestion endpoint: agents anywhere post over HTTPS, authenticated per request (SharedKey, client assertion, Entra bearer token).
  //checkov:skip=CKV_AZURE_17: off by default: on Flex Consumption agents authenticate with a client assertion signed by their certificate key (README, agents); the `clientCertificates` parameter turns Optional mode and the X-ARR-ClientCert trust on together, never one without the other.
  //checkov:skip=CKV_AZURE_212: a minimum instance count (always-ready instances) is billed while idle; the plan scales from zero on demand.
  //checkov:skip=CKV_AZURE_213: App Service health checks probe a path on each instance, which Flex Consumption does not use for scale-to-zero apps; failures surface in Application Insights.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: clientCertificates
    clientCertMode: 'Optional'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Platform: the Functions host's storage, through the app identity (Storage Blob Data Owner
        // on the host account only; the host needs blobs alone for HTTP, Event Grid and timer triggers).
        { name: 'AzureWebJobsStorage__accountName', value: hostStorage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
        // Platform and code: the host sends its telemetry there; shared/telemetry.py too.
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
        // Platform: the host signs its telemetry in with the identity (local auth is off).
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
        // Code: the data account, identity-based (no connection string).
        { name: 'SLUICE_STORAGE__blobServiceUri', value: dataBlobEndpoint }
        { name: 'SLUICE_STORAGE__tableServiceUri', value: dataTableEndpoint }
        { name: 'SLUICE_STORAGE__credential', value: 'managedidentity' }
        { name: 'SLUICE_STORAGE__clientId', value: identityClientId }
        // Code: Azure SQL with an Entra token of the identity above.
        { name: 'SLUICE_SQL_DIALECT', value: 'tsql' }
        { name: 'SLUICE_SQL_AUTH', value: 'entra' }
        { name: 'SLUICE_SQL_CONNECTION', value: sqlConnectionString }
        // Code: workspace keys in Key Vault (roles and why: rbac.bicep).
        { name: 'SLUICE_KEY_VAULT_URI', value: keyVaultUri }
        { name: 'SLUICE_TRUST_FORWARDED_CLIENT_CERT', value: clientCertificates ? 'true' : 'false' }
        { name: 'SLUICE_TOKEN_ISSUER', value: tokenIssuer }
        { name: 'SLUICE_TOKEN_JWKS_URI', value: tokenJwksUri }
        { name: 'SLUICE_PLANS', value: plans }
        { name: 'SLUICE_LOG_LEVEL', value: logLevel }
        { name: 'SLUICE_WORKSPACE_DELETE_GRACE_DAYS', value: string(workspaceDeleteGraceDays) }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identityId }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: maximumInstanceCount, instanceMemoryMB: instanceMemoryMB }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

output name string = app.name
output id string = app.id
output endpoint string = 'https://${app.properties.defaultHostName}'
