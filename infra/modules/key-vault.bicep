// Key Vault for the workspace keys (primary, secondary and enrollment key of every workspace).
// Access is Azure RBAC only (no access policies): roles are granted in rbac.bicep. Soft delete and purge
// protection keep a deleted key recoverable for softDeleteRetentionInDays, whoever deleted it.
param name string
param location string
param tags object
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90
param logAnalyticsId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109: the function app on Flex Consumption without a virtual network has no fixed outbound address to allow, so the firewall default stays Allow; every request still needs a Microsoft Entra token and an RBAC role on this vault.
  //checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109: public network access stays on until the app runs in a virtual network with a private endpoint (a follow-up).
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Who read or wrote which secret, and when: the vault's audit log goes to Log Analytics.
resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsId
    logs: [{ categoryGroup: 'audit', enabled: true }]
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
