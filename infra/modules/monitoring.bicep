// Log Analytics + workspace-based Application Insights. Local (key) authentication is off on both:
// telemetry is accepted only with a Microsoft Entra token (the app identity holds Monitoring Metrics
// Publisher on the component, rbac.bicep; the host signs in through APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
param logAnalyticsName string
param appInsightsName string
param location string
param tags object
@minValue(30)
@maxValue(730)
param retentionInDays int = 90 // SQL and Key Vault audit records are kept this long

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: retentionInDays
    features: { disableLocalAuth: true }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output logAnalyticsId string = logAnalytics.id
output appInsightsName string = appInsights.name
output appInsightsConnectionString string = appInsights.properties.ConnectionString
