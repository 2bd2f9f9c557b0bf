// The Event Grid subscription that delivers BlobCreated events of the workspace containers to
// process_blob. Not part of main.bicep: Event Grid validates an Azure Function destination when the
// subscription is created, so the function must already be deployed. infra/hooks/postdeploy.sh deploys
// this file into the resource group after `azd deploy` (az deployment group create); it is idempotent.
param systemTopicName string
param functionAppName string
@description('The function with the eventGridTrigger binding (process_blob/function.json).')
param functionName string = 'process_blob'
param storageAccountName string
param deadLetterContainerName string
param subscriptionName string = 'process-blob'

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: subscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/${functionName}'
        maxEventsPerBatch: 1 // the trigger takes one event per invocation
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      // Workspace containers only (ws-{workspace}; shared.ids.CONTAINER_PREFIX) ...
      subjectBeginsWith: '/blobServices/default/containers/ws-'
      // ... and raw blobs only: a quarantined copy (quarantine/raw/...) or the dead letters raise no
      // invocation that process_blob would ignore anyway (shared.ids.RAW_PREFIX).
      advancedFilters: [
        {
          operatorType: 'StringContains'
          key: 'subject'
          values: ['/blobs/raw/']
        }
      ]
      enableAdvancedFilteringOnArrays: false
    }
    // At least once: redelivery is harmless (the ledger row). A database or storage outage makes
    // process_blob raise, so Event Grid retries with backoff for up to 24 hours, then dead-letters.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output name string = subscription.name
