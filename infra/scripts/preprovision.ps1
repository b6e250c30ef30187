# azd preprovision hook (Windows): same contract as preprovision.sh — every secret parameter gets a value, the
# link-signing key is generated once, unused integrations get an unguessable fail-closed value. Values are never printed.
$ErrorActionPreference = 'Stop'

function New-RandomValue {
    $bytes = New-Object byte[] 48
    [System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($bytes)
    return ([Convert]::ToBase64String($bytes) -replace '[/+=]', '')
}

function Set-IfMissing([string]$Name, [string]$Fallback) {
    $current = ''
    try { $current = (azd env get-value $Name 2>$null) } catch { $current = '' }
    if ([string]::IsNullOrWhiteSpace($current) -or $current -like 'ERROR*' -or $current -like '*not found*') {
        azd env set $Name $Fallback | Out-Null
        Write-Host "preprovision: $Name was not set; stored a generated value in the azd environment"
    }
}

Set-IfMissing 'UNSUBSCRIBE_SIGNING_KEY' (New-RandomValue)
Set-IfMissing 'TEAMS_CHANNEL_WEBHOOKS' '{}'
foreach ($name in 'GRAPH_CLIENT_SECRET', 'BOT_APP_SECRET', 'HUBSPOT_CLIENT_SECRET', 'ZOHO_WEBHOOK_TOKEN', 'GENERIC_WEBHOOK_SECRET') {
    Set-IfMissing $name ("unset-" + (New-RandomValue))
}
