// The app's user-assigned identity: every function reaches storage, Key Vault, Azure SQL and
// Application Insights with it (roles in rbac.bicep; its SQL user in infra/hooks/postprovision.sh).
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
