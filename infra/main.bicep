// crmflow: everything one environment needs, secure by default.
// One user-assigned identity; no keys or connection strings (shared-key and local auth are off everywhere the service
// allows it); secrets live in Key Vault and reach the app as Key Vault references.
// Validate with `az bicep build --file infra/main.bicep` and `az deployment sub what-if` (see docs/deploy.md).
targetScope = 'subscription'

// --- environment -------------------------------------------------------------------------------------------------
@minLength(1)
@maxLength(64)
@description('azd environment name; with the subscription and location it seeds the resource token in every name.')
param environmentName string

@minLength(1)
@description('Region of all resources. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Resource group name; empty means rg-<environmentName>.')
param resourceGroupName string = ''

@description('Object id of the operator (user or group) who runs crmflow CLI tools against Azure and rotates secrets; empty for none.')
param operatorPrincipalId string = ''

@allowed(['User', 'Group', 'ServicePrincipal'])
@description('Principal type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

// --- Function App (Flex Consumption) -------------------------------------------------------------------------------
@allowed([512, 2048, 4096])
@description('Memory of each Flex Consumption instance, in MB.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Upper bound of Flex Consumption scale-out (caps concurrent Graph/bot senders as well as cost).')
param maximumInstanceCount int = 100

@description('Application (client) id of the Entra app registration that signs users in to the dashboard and approval pages; empty leaves App Service authentication off.')
param authClientId string = ''

// Sign-in in front of the approval pages: only then may the app trust the signed-in name App Service passes on.
var appServiceAuthEnabled = !empty(authClientId)

// --- Service Bus -----------------------------------------------------------------------------------------------------
@description('Duplicate-detection window of every queue (ISO 8601, between PT20S and P7D). It cannot be changed on an existing queue.')
param duplicateDetectionWindow string = 'PT10M'

@minValue(1)
@maxValue(100)
@description('Deliveries before a message goes to the dead-letter queue.')
param maxDeliveryCount int = 10

@description('Peek-lock duration (ISO 8601, at most PT5M); the Functions host renews it while a function runs.')
param lockDuration string = 'PT1M'

@description('Time to live of queued messages (ISO 8601); expired messages are dead-lettered, never dropped.')
param messageTimeToLive string = 'P14D'

// --- Key Vault and monitoring -------------------------------------------------------------------------------------
@description('Purge protection on the vault. Leave on in production; a purge-protected vault name stays reserved for the retention period after deletion.')
param enablePurgeProtection bool = true

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days.')
param logRetentionDays int = 30

// --- crmflow settings (defaults equal those in shared/settings.py; a test keeps them equal) ------------------------
@description('DEFAULT_TIMEZONE: time zone of customers whose record has none.')
param defaultTimezone string = 'Asia/Tokyo'

@description('DEFAULT_LOCALE: locale of customers whose record has none.')
param defaultLocale string = 'ja-JP'

@minValue(1)
@maxValue(1024)
@description('CUSTOMER_SHARDS: customer partitions; changing it needs a re-import.')
param customerShards int = 64

@description('SWEEP_SCHEDULE: NCRONTAB of the daily sweep, in UTC (Flex Consumption has no WEBSITE_TIME_ZONE).')
param sweepSchedule string = '0 0 0 * * *'

@description('DASHBOARD_REFRESH_SCHEDULE: NCRONTAB (UTC) of the dashboard snapshot timer.')
param dashboardRefreshSchedule string = '0 */30 * * * *'

@description('BUSINESS_HOURS: customer-local hours in which emails are delivered.')
param businessHours string = '09:00-18:00'

@description('BUSINESS_DAYS: customer-local weekdays on which emails are delivered.')
param businessDays string = 'mon-fri'

@allowed(['debug', 'info', 'warning', 'error'])
@description('LOG_LEVEL of the application.')
param logLevel string = 'info'

@allowed(['local', 'dataverse'])
@description('CRM_TASK_TARGET: where crm_task actions go.')
param crmTaskTarget string = 'local'

@description('DATAVERSE_URL, e.g. https://contoso.crm7.dynamics.com; empty when Dataverse is not used.')
param dataverseUrl string = ''

@description('SALESFORCE_ORG_IDS: comma-separated organisation ids allowed to send outbound messages.')
param salesforceOrgIds string = ''

@description('PUBLIC_BASE_URL used in unsubscribe and approval links; empty means https://<function app>.azurewebsites.net.')
param publicBaseUrl string = ''

@description('GRAPH_TENANT_ID; empty means the tenant of this subscription.')
param graphTenantId string = ''

@description('GRAPH_CLIENT_ID of the Graph app registration; empty with graphUseManagedIdentity means the app identity.')
param graphClientId string = ''

@description('GRAPH_USE_MANAGED_IDENTITY: acquire Graph tokens with the user-assigned identity instead of a client secret.')
param graphUseManagedIdentity bool = false

@description('MAIL_SENDER: the shared mailbox that sends customer mail.')
param mailSender string = ''

@description('BOT_APP_ID of the single-tenant Azure Bot; empty skips creating the bot.')
param botAppId string = ''

@description('BOT_TENANT_ID; empty means the tenant of this subscription.')
param botTenantId string = ''

@allowed(['F0', 'S1'])
@description('Azure Bot pricing tier (Teams is a standard channel: F0 is enough).')
param botSku string = 'F0'

// --- secrets: no defaults, supplied by the azd environment (infra/scripts/preprovision.* fills unused ones) --------
@secure()
@minLength(1)
@description('GRAPH_CLIENT_SECRET of the Graph app registration.')
param graphClientSecret string

@secure()
@minLength(1)
@description('BOT_APP_SECRET of the Azure Bot app registration.')
param botAppSecret string

@secure()
@minLength(2)
@description('TEAMS_CHANNEL_WEBHOOKS: JSON object of Teams Workflows webhook URLs per channel name.')
param teamsChannelWebhooks string

@secure()
@minLength(32)
@description('UNSUBSCRIBE_SIGNING_KEY: HMAC key of unsubscribe and approval links.')
param unsubscribeSigningKey string

@secure()
@minLength(1)
@description('HUBSPOT_CLIENT_SECRET: HubSpot app client secret (X-HubSpot-Signature-v3).')
param hubspotClientSecret string

@secure()
@minLength(1)
@description('ZOHO_WEBHOOK_TOKEN: shared token of the Zoho webhook.')
param zohoWebhookToken string

@secure()
@minLength(1)
@description('GENERIC_WEBHOOK_SECRET: HMAC-SHA256 key of the generic webhook.')
param genericWebhookSecret string

// --- names ---------------------------------------------------------------------------------------------------------
var abbrs = loadJsonContent('./abbreviations.json')
var names = loadJsonContent('./names.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}crmflow-${resourceToken}'
var keyVaultName = '${abbrs.keyVaultVaults}${resourceToken}'
var deploymentContainerName = 'deploymentpackage'
var appBaseUrl = !empty(publicBaseUrl) ? publicBaseUrl : 'https://${functionAppName}.azurewebsites.net'
var tenantId = tenant().tenantId

// Routes reachable without Entra sign-in when App Service authentication is on: CRM webhooks (they carry their own
// signature or function key), the customer-facing unsubscribe link (signed token), the health probe and the OpenAPI
// description.
var anonymousPaths = [
  '/api/crm/dataverse'
  '/api/crm/hubspot'
  '/api/crm/zoho'
  '/api/crm/salesforce'
  '/api/crm/generic'
  '/api/unsubscribe'
  '/api/health'
  // The OpenAPI description of the routes: their shape only, no data (API clients and fuzzers read it unsigned).
  '/api/openapi.json'
  // The Teams tabs' entry page (no data: it starts Teams' sign-in pop-up) and the Teams JavaScript SDK it loads.
  '/api/teams/tab'
  '/api/teams/teams.js'
]

// Key Vault secret names: the setting name in lower case with dashes (vault names allow no underscores).
var secretValues = {
  'graph-client-secret': graphClientSecret
  'bot-app-secret': botAppSecret
  'teams-channel-webhooks': teamsChannelWebhooks
  'unsubscribe-signing-key': unsubscribeSigningKey
  'hubspot-client-secret': hubspotClientSecret
  'zoho-webhook-token': zohoWebhookToken
  'generic-webhook-secret': genericWebhookSecret
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'core/identity/user-assigned-identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}crmflow-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'core/monitor/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
    appPrincipalId: identity.outputs.principalId
  }
}

module storage 'core/storage/storage-account.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    tableNames: names.tables
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module serviceBus 'core/messaging/service-bus.bicep' = {
  name: 'serviceBus'
  scope: rg
  params: {
    name: '${abbrs.serviceBusNamespaces}${resourceToken}'
    location: location
    tags: tags
    queueNames: names.queues
    duplicateDetectionWindow: duplicateDetectionWindow
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    messageTimeToLive: messageTimeToLive
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module keyVault 'core/security/key-vault.bicep' = {
  name: 'keyVault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    enablePurgeProtection: enablePurgeProtection
    secretValues: secretValues
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

// Every app setting the code reads (shared/settings.py) plus the identity-based connections of the Functions host.
// tests/unit/test_infra_settings.py checks this object against Settings.names() and local.settings.example.json.
var appSettings = {
  // Functions host storage and Service Bus trigger connections, through the user-assigned identity.
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identity.outputs.clientId
  // DefaultAzureCredential in shared/ picks the user-assigned identity by this client id.
  AZURE_CLIENT_ID: identity.outputs.clientId
  // Application Insights with Entra ID ingestion (local auth is disabled on the component).
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'

  // storage
  TABLES_ACCOUNT_URL: storage.outputs.tableEndpoint
  CUSTOMER_SHARDS: string(customerShards)
  // customers and rules
  DEFAULT_TIMEZONE: defaultTimezone
  DEFAULT_LOCALE: defaultLocale
  RULES_DIR: 'rules'
  JOURNEYS_DIR: 'journeys'
  TEMPLATES_DIR: 'templates'
  SEGMENTS_FILE: 'segments.yaml'
  MAPPINGS_DIR: 'mappings'
  CONTACT_POLICY_FILE: 'contact_policy.yaml'
  TEAMS_DELIVERY_MODE: 'instant'
  // pipeline
  BROKER: 'servicebus'
  SWEEP_SCHEDULE: sweepSchedule
  // dashboard: the signed-in user is trusted only when App Service authentication is on (else the function key)
  DASHBOARD_AUTH: empty(authClientId) ? 'key' : 'app_service'
  DASHBOARD_REFRESH_SCHEDULE: dashboardRefreshSchedule
  BUSINESS_HOURS: businessHours
  BUSINESS_DAYS: businessDays
  // delivery
  DELIVERY_TRANSPORT: 'live'
  GRAPH_TENANT_ID: !empty(graphTenantId) ? graphTenantId : tenantId
  GRAPH_CLIENT_ID: empty(graphClientId) && graphUseManagedIdentity ? identity.outputs.clientId : graphClientId
  GRAPH_CLIENT_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=graph-client-secret)'
  GRAPH_USE_MANAGED_IDENTITY: graphUseManagedIdentity ? 'true' : 'false'
  AUTHORITY_HOST: 'https://login.microsoftonline.com'
  GRAPH_BASE_URL: 'https://graph.microsoft.com/v1.0'
  MAIL_SENDER: mailSender
  BOT_APP_ID: botAppId
  BOT_APP_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=bot-app-secret)'
  BOT_TENANT_ID: !empty(botTenantId) ? botTenantId : tenantId
  BOT_SERVICE_URL: 'https://smba.trafficmanager.net/teams'
  TEAMS_CHANNEL_WEBHOOKS: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=teams-channel-webhooks)'
  PUBLIC_BASE_URL: appBaseUrl
  UNSUBSCRIBE_SIGNING_KEY: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=unsubscribe-signing-key)'
  // Microsoft's documented limits (Exchange Online per mailbox, Bot Framework, Teams Workflows webhooks).
  MAIL_MESSAGES_PER_MINUTE: '30'
  MAIL_RECIPIENTS_PER_DAY: '10000'
  MAIL_CONCURRENT_REQUESTS: '4'
  MAIL_SEND_SETTLE_SECONDS: '120'
  BOT_SENDS_PER_SECOND_PER_CONVERSATION: '7'
  BOT_REQUESTS_PER_SECOND: '50'
  WEBHOOK_POSTS_PER_SECOND: '4'
  DELIVERY_MAX_ATTEMPTS: '8'
  // approvals
  APPROVAL_TTL_DAYS: '7'
  APP_SERVICE_AUTH_ENABLED: appServiceAuthEnabled ? 'true' : 'false'
  // CRM webhooks and write-back
  HUBSPOT_CLIENT_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=hubspot-client-secret)'
  ZOHO_WEBHOOK_TOKEN: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=zoho-webhook-token)'
  SALESFORCE_ORG_IDS: salesforceOrgIds
  GENERIC_WEBHOOK_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=generic-webhook-secret)'
  DATAVERSE_URL: dataverseUrl
  CRM_TASK_TARGET: crmTaskTarget
  // housekeeping
  AUDIT_RETENTION_DAYS: '400'
  // observability
  LOG_LEVEL: logLevel
}

module functionApp 'app/function-app.bicep' = {
  name: 'functionApp'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    deploymentContainerUrl: '${storage.outputs.blobEndpoint}${deploymentContainerName}'
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings
    authClientId: authClientId
    authTenantId: tenantId
    anonymousPaths: anonymousPaths
  }
  // Role assignments first: Key Vault references and the host's storage connection resolve at start-up.
  dependsOn: [
    keyVault
    serviceBus
    monitoring
  ]
}

module bot 'core/bot/azure-bot.bicep' = if (!empty(botAppId)) {
  name: 'bot'
  scope: rg
  params: {
    name: '${abbrs.botServicesBots}crmflow-${resourceToken}'
    tags: tags
    botAppId: botAppId
    botTenantId: !empty(botTenantId) ? botTenantId : tenantId
    endpoint: '${appBaseUrl}/api/bot/messages'
    sku: botSku
  }
}

// azd reads these into the environment (.azure/<env>/.env).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output TABLES_ACCOUNT_URL string = storage.outputs.tableEndpoint
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
