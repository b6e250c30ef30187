// Single-tenant Azure Bot with the Microsoft Teams channel: crmflow sends proactive 1:1 messages to reps through it.
@description('Bot resource name.')
param name string

@description('Tags applied to the bot.')
param tags object = {}

@description('Application (client) id of the bot app registration (BOT_APP_ID).')
param botAppId string

@description('Tenant of the bot app registration (single-tenant).')
param botTenantId string

@description('Messaging endpoint. The bot is notification-only; crmflow does not act on incoming activities.')
param endpoint string

@allowed(['F0', 'S1'])
@description('Pricing tier.')
param sku string = 'F0'

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: name
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    name: sku
  }
  properties: {
    displayName: 'crmflow'
    endpoint: endpoint
    msaAppId: botAppId
    msaAppTenantId: botTenantId
    msaAppType: 'SingleTenant'
    // No Direct Line / Web Chat keys: Teams only.
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource teams 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
      enableCalling: false
    }
  }
}

output name string = bot.name
