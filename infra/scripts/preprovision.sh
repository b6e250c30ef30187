#!/bin/sh
# azd preprovision hook: every secret parameter of infra/main.bicep must have a value, otherwise its Key Vault
# reference would not resolve and the app would see the reference text instead of a secret.
# - UNSUBSCRIBE_SIGNING_KEY: generated once (48 random bytes) when missing.
# - TEAMS_CHANNEL_WEBHOOKS: '{}' (no channels) when missing.
# - Credentials of integrations not in use: a random value nobody knows, so those routes reject every call
#   (fail closed) until you set the real secret with `azd env set NAME value` and run `azd provision` again.
# Values are never printed.
set -eu

random_value() {
  head -c 48 /dev/urandom | base64 | tr -d '\n/+='
}

ensure() {
  name="$1"
  fallback="$2"
  current="$(azd env get-value "$name" 2>/dev/null || true)"
  # `azd env get-value` prints an error text (not a value) for a missing key on some versions.
  case "$current" in
    ""|ERROR*|*"not found"*)
      azd env set "$name" "$fallback" >/dev/null
      echo "preprovision: $name was not set; stored a generated value in the azd environment"
      ;;
  esac
}

ensure UNSUBSCRIBE_SIGNING_KEY "$(random_value)"
ensure TEAMS_CHANNEL_WEBHOOKS '{}'
for name in GRAPH_CLIENT_SECRET BOT_APP_SECRET HUBSPOT_CLIENT_SECRET ZOHO_WEBHOOK_TOKEN GENERIC_WEBHOOK_SECRET; do
  ensure "$name" "unset-$(random_value)"
done
