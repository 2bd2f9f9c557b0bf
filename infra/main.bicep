// Sluice on Azure, for `azd up`: everything the code needs and nothing else, reached with identities
// instead of keys. One module per concern under modules/, every role assignment in rbac.bicep, names
// derived from resourceToken (each overridable), outputs in UPPER_SNAKE for the hooks (infra/hooks/).
// The Event Grid subscription to process_blob needs the deployed function: infra/hooks/postdeploy.sh
// deploys modules/blob-created-subscription.bicep after `azd deploy`.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; it seeds every resource name through resourceToken.')
param environmentName string

@minLength(1)
@description('Primary location for all resources (a region that offers Flex Consumption).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the deploying principal (azd sets AZURE_PRINCIPAL_ID): the Azure SQL Entra administrator and the operator roles of rbac.bicep.')
param principalId string

@allowed(['User', 'Group', 'ServicePrincipal'])
param principalType string = 'User'

@description('Name shown for the SQL Entra administrator.')
param sqlAdminLogin string = 'sluice-deployer'

// Names: empty = derived from resourceToken.
param resourceGroupName string = ''
param identityName string = ''
param logAnalyticsName string = ''
param appInsightsName string = ''
param hostStorageAccountName string = ''
param dataStorageAccountName string = ''
param keyVaultName string = ''
param sqlServerName string = ''
param sqlDatabaseName string = ''
param systemTopicName string = ''
param planName string = ''
param functionAppName string = ''

@description('Replication of the data account (raw blobs, registry tables).')
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS', 'Standard_RAGRS', 'Standard_RAGZRS'])
param dataStorageSku string = 'Standard_ZRS'

@description('The lifecycle backstop: raw blobs older than this are deleted. Longest plan window (365 days, premium) plus a week; infra/hooks/deploy.py check-plans refuses a plans.json window it would cut into.')
@minValue(8)
param rawBackstopDays int = 372

@allowed(['DEBUG', 'INFO', 'WARNING', 'ERROR'])
param logLevel string = 'INFO'

@minValue(0)
param workspaceDeleteGraceDays int = 14

@description('Azure SQL free offer for the database (one per subscription).')
param sqlUseFreeLimit bool = false

@description('Entra ID issuer of the Logs Ingestion API bearer tokens; empty = this tenant\'s v2.0 issuer.')
param tokenIssuer string = ''

@description('Incoming client certificates (Optional) and X-ARR-ClientCert trust, together. Leave off on Flex Consumption.')
param clientCertificates bool = false

@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteDays int = 90

var abbrs = loadJsonContent('abbreviations.json')
// SLUICE_PLANS for the app: overrides of shared/plans.py in the format shared/settings.py reads, e.g.
// {"free": {"daily_cap_bytes": 1073741824}}; {} keeps the built-in plans. A file rather than an azd
// variable: JSON survives it unescaped, it is versioned, and the preprovision hook checks the same file.
var plans = loadJsonContent('plans.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var loginEndpoint = environment().authentication.loginEndpoint // https://login.microsoftonline.com/
var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-deadletter'
// The tables the code opens (shared: workspaces, agents, assertionids, audit, dcrs, dailyusage,
// diagsources, readergrants); tests/infra checks this list against the adapters' defaults.
var dataTables = [
  'workspaces'
  'agents'
  'assertionids'
  'audit'
  'dcrs'
  'dailyusage'
  'diagsources'
  'readergrants'
]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: !empty(identityName) ? identityName : '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    appInsightsName: !empty(appInsightsName) ? appInsightsName : '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module hostStorage 'modules/storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: !empty(hostStorageAccountName) ? hostStorageAccountName : '${abbrs.storageStorageAccounts}fn${resourceToken}'
    location: location
    tags: tags
    skuName: 'Standard_LRS'
    containers: [deploymentContainerName]
  }
}

module dataStorage 'modules/storage.bicep' = {
  name: 'data-storage'
  scope: rg
  params: {
    name: !empty(dataStorageAccountName) ? dataStorageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: dataStorageSku
    containers: [deadLetterContainerName]
    tables: dataTables
    rawBackstopDays: rawBackstopDays
  }
}

module keyVault 'modules/key-vault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    softDeleteRetentionInDays: keyVaultSoftDeleteDays
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  scope: rg
  params: {
    serverName: !empty(sqlServerName) ? sqlServerName : '${abbrs.sqlServers}${resourceToken}'
    databaseName: !empty(sqlDatabaseName) ? sqlDatabaseName : '${abbrs.sqlServersDatabases}sluice'
    location: location
    tags: tags
    adminObjectId: principalId
    adminLogin: sqlAdminLogin
    adminPrincipalType: principalType == 'ServicePrincipal' ? 'Application' : principalType
    useFreeLimit: sqlUseFreeLimit
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
}

module events 'modules/events.bicep' = {
  name: 'events'
  scope: rg
  params: {
    name: !empty(systemTopicName) ? systemTopicName : '${abbrs.eventGridSystemTopics}${resourceToken}'
    location: location
    tags: tags
    storageAccountId: dataStorage.outputs.id
  }
}

module app 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}${resourceToken}'
    planName: !empty(planName) ? planName : '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageAccountName: hostStorage.outputs.name
    deploymentContainerName: deploymentContainerName
    dataBlobEndpoint: dataStorage.outputs.blobEndpoint
    dataTableEndpoint: dataStorage.outputs.tableEndpoint
    keyVaultUri: keyVault.outputs.uri
    sqlConnectionString: sql.outputs.connectionString
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    tokenIssuer: !empty(tokenIssuer) ? tokenIssuer : '${loginEndpoint}${tenant().tenantId}/v2.0'
    tokenJwksUri: '${loginEndpoint}${tenant().tenantId}/discovery/v2.0/keys'
    plans: empty(plans) ? '' : string(plans)
    logLevel: logLevel
    workspaceDeleteGraceDays: workspaceDeleteGraceDays
    clientCertificates: clientCertificates
  }
}

module rbac 'rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    hostStorageAccountName: hostStorage.outputs.name
    dataStorageAccountName: dataStorage.outputs.name
    deadLetterContainerName: deadLetterContainerName
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    appPrincipalId: identity.outputs.principalId
    systemTopicPrincipalId: events.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output SLUICE_ENDPOINT string = app.outputs.endpoint
output AZURE_APP_IDENTITY_NAME string = identity.outputs.name
output AZURE_APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = dataStorage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = dataStorage.outputs.blobEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = dataStorage.outputs.tableEndpoint
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output AZURE_DEADLETTER_CONTAINER_NAME string = deadLetterContainerName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output AZURE_SQL_SERVER_NAME string = sql.outputs.serverName
output AZURE_SQL_SERVER_FQDN string = sql.outputs.serverFqdn
output AZURE_SQL_DATABASE_NAME string = sql.outputs.databaseName
output AZURE_SQL_CONNECTION_STRING string = sql.outputs.connectionString
output AZURE_EVENTGRID_SYSTEM_TOPIC_NAME string = events.outputs.name
