// Service Bus namespace (Standard) with the app's queues: duplicate detection on MessageId (the dedupe key),
// bounded deliveries, dead-lettering of expired messages. Local (SAS) auth is off: Entra ID only.
@description('Namespace name.')
param name string

@description('Region.')
param location string

@description('Tags applied to the namespace.')
param tags object = {}

@description('Queues (shared/domain/names.py QUEUES, via infra/names.json).')
param queueNames array

@description('Duplicate-detection window (ISO 8601, PT20S to P7D); fixed once a queue exists.')
param duplicateDetectionWindow string

@description('Deliveries before a message is dead-lettered.')
param maxDeliveryCount int

@description('Peek-lock duration (ISO 8601, at most PT5M).')
param lockDuration string

@description('Time to live of messages (ISO 8601).')
param messageTimeToLive string

@description('Principal id of the app identity (publishes and runs the queue triggers).')
param appPrincipalId string

@description('Object id of an operator who runs `crmflow dlq list|replay`; empty for none.')
param operatorPrincipalId string = ''

@description('Principal type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

var roles = {
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for queue in queueNames: {
  parent: namespace
  name: queue
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    defaultMessageTimeToLive: messageTimeToLive
    deadLetteringOnMessageExpiration: true
    requiresSession: false
    enableBatchedOperations: true
    maxSizeInMegabytes: 1024
  }
}]

// Webhooks, the sweep planner and the evaluators publish to queues.
resource appDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, appPrincipalId, roles.serviceBusDataSender)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The Service Bus triggers receive and settle messages.
resource appDataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, appPrincipalId, roles.serviceBusDataReceiver)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// `crmflow dlq list|replay` reads dead letters and re-sends them.
resource operatorDataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(namespace.id, operatorPrincipalId, roles.serviceBusDataReceiver)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

resource operatorDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(namespace.id, operatorPrincipalId, roles.serviceBusDataSender)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
