// The Event Grid system topic of the data account: the source of the BlobCreated events that feed
// process_blob. Its subscription needs the deployed function, so it is a second deployment
// (blob-created-subscription.bicep, run by infra/hooks/postdeploy.sh). The topic's own identity writes
// undeliverable events to the dead-letter container (Storage Blob Data Contributor on that container
// only, rbac.bicep): the account accepts no shared keys.
param name string
param location string
param tags object
param storageAccountId string

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
