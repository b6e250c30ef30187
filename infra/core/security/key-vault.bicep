// Key Vault (RBAC mode) holding the Graph and bot credentials, the webhook secrets and the link-signing key.
// The app reads them only through Key Vault references resolved by the platform with its user-assigned identity.
@description('Vault name (3-24 characters).')
param name string

@description('Region.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

@description('Purge protection (recommended; reserves the name for the retention period after deletion).')
param enablePurgeProtection bool = true

@secure()
@description('Secret name to value. Names are the app-setting names in lower case with dashes.')
param secretValues object

@description('Principal id of the app identity (resolves Key Vault references).')
param appPrincipalId string

@description('Object id of an operator who rotates secrets; empty for none.')
param operatorPrincipalId string = ''

@description('Principal type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
  }
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for secret in items(secretValues): {
  parent: vault
  name: secret.key
  properties: {
    value: secret.value
    contentType: 'text/plain'
  }
}]

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
