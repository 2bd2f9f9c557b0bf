// Azure SQL: a logical server that accepts Microsoft Entra tokens only (no SQL logins, no passwords
// anywhere) and one serverless database that pauses when idle. The app signs in with its own identity
// (SLUICE_SQL_AUTH=entra, shared/sql/azure.py); its database user, a member of sluice_processor only,
// is created by infra/hooks/postprovision.sh after the migrations, run by the Entra administrator.
param serverName string
param databaseName string
param location string
param tags object
@description('Object id of the Entra principal administering the server (the deploying user, or a group): it runs the migrations and creates the app database user.')
param adminObjectId string
@description('Display name shown for that administrator.')
param adminLogin string
@allowed(['User', 'Group', 'Application'])
param adminPrincipalType string
@description('Azure SQL free offer (one per subscription): pause instead of billing once the monthly free vCore seconds are spent.')
param useFreeLimit bool
@minValue(1)
param maxSizeGb int = 32
param logAnalyticsId string

resource server 'Microsoft.Sql/servers@2023-08-01' = {
  //checkov:skip=CKV_AZURE_113: Flex Consumption without a virtual network has no fixed outbound address, so the server stays reachable on its public endpoint behind the "Azure services" firewall rule below; only Microsoft Entra tokens of principals with a database user get in (azureADOnlyAuthentication). A private endpoint is a follow-up with VNet integration.
  //checkov:skip=CKV_AZURE_24: audit records go to Log Analytics (isAzureMonitorTargetEnabled) and are kept for the workspace's retention, 90 days (monitoring.bicep); retentionDays applies to storage-account targets only.
  //checkov:skip=CKV_AZURE_25: threat detection needs Microsoft Defender for SQL, billed per server per month whether the database is paused or not; enable it per deployment (Defender for Cloud) when the budget allows.
  name: serverName
  location: location
  tags: tags
  properties: {
    version: '12.0'
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    restrictOutboundNetworkAccess: 'Disabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: adminLogin
      sid: adminObjectId
      principalType: adminPrincipalType
      tenantId: tenant().tenantId
    }
  }
}

// 0.0.0.0 - 0.0.0.0 is Azure's "allow Azure services" rule (not "any address"): Flex Consumption's
// outbound addresses are shared and change. The deploying machine gets a temporary rule of its own in
// infra/hooks/postprovision.sh, removed when the hook ends.
resource allowAzureServices 'Microsoft.Sql/servers/firewallRules@2023-08-01' = {
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

var databaseProperties = {
  collation: 'SQL_Latin1_General_CP1_CI_AS'
  maxSizeBytes: maxSizeGb * 1024 * 1024 * 1024
  autoPauseDelay: 60
  minCapacity: json('0.5')
  zoneRedundant: false
  requestedBackupStorageRedundancy: 'Geo'
  useFreeLimit: useFreeLimit
}

resource database 'Microsoft.Sql/servers/databases@2023-08-01' = {
  //checkov:skip=CKV_AZURE_229: zone redundancy is not offered for serverless General Purpose in every region and costs more per vCore; the database holds aggregates that retention_timer and process_blob can wait for (Event Grid retries for 24 hours). Backups are geo-redundant.
  //checkov:skip=CKV_AZURE_25: threat detection needs Microsoft Defender for SQL, billed per server per month whether the database is paused or not; enable it per deployment (Defender for Cloud) when the budget allows.
  //checkov:skip=CKV_AZURE_23: auditing is set on the server (the `auditing` resource below), which covers every database on it.
  //checkov:skip=CKV_AZURE_26: alert e-mails belong to Defender for SQL (see CKV_AZURE_25).
  //checkov:skip=CKV_AZURE_27: alert e-mails belong to Defender for SQL (see CKV_AZURE_25).
  parent: server
  name: databaseName
  location: location
  tags: tags
  sku: {
    name: 'GP_S_Gen5'
    tier: 'GeneralPurpose'
    family: 'Gen5'
    capacity: 1
  }
  // freeLimitExhaustionBehavior is accepted only together with the free offer.
  properties: useFreeLimit ? union(databaseProperties, { freeLimitExhaustionBehavior: 'AutoPause' }) : databaseProperties
}

// Server audit (logins, permission changes, schema changes) to Log Analytics: the master database's
// SQLSecurityAuditEvents diagnostic category, switched on by the auditing settings below.
resource master 'Microsoft.Sql/servers/databases@2023-08-01' existing = {
  //checkov:skip=CKV_AZURE_23: an `existing` reference to the master database Azure creates with the server, declared only to scope the audit diagnostic setting; nothing is deployed here, and server auditing is on.
  //checkov:skip=CKV_AZURE_25: an `existing` reference, nothing is deployed (see CKV_AZURE_25 on the server).
  parent: server
  name: 'master'
}

resource auditDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: master
  properties: {
    workspaceId: logAnalyticsId
    logs: [{ category: 'SQLSecurityAuditEvents', enabled: true }]
  }
}

resource auditing 'Microsoft.Sql/servers/auditingSettings@2023-08-01' = {
  parent: server
  name: 'default'
  properties: {
    state: 'Enabled'
    isAzureMonitorTargetEnabled: true
    auditActionsAndGroups: [
      'SUCCESSFUL_DATABASE_AUTHENTICATION_GROUP'
      'FAILED_DATABASE_AUTHENTICATION_GROUP'
      'DATABASE_PERMISSION_CHANGE_GROUP'
      'DATABASE_PRINCIPAL_CHANGE_GROUP'
      'DATABASE_ROLE_MEMBER_CHANGE_GROUP'
      'SCHEMA_OBJECT_CHANGE_GROUP'
    ]
  }
  dependsOn: [auditDiagnostics]
}

output serverName string = server.name
output serverFqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
// What SLUICE_SQL_CONNECTION holds with SLUICE_SQL_AUTH=entra: no UID, PWD or Authentication keyword
// (shared/sql/azure.py refuses them; the access token is the only credential). 30 s, not the default
// 15, so the first connection after an auto-pause waits for the database to resume.
output connectionString string = 'Driver={ODBC Driver 18 for SQL Server};Server=tcp:${server.properties.fullyQualifiedDomainName},1433;Database=${database.name};Encrypt=yes;TrustServerCertificate=no;Connection Timeout=30'
