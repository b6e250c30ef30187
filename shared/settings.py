"""App settings: every name is defined once, here, and validated once at cold start.

`Settings.from_env()` reads the process environment (Azure app settings, `local.settings.json` values, or the
variables the CLI sets) and fails with a `ConfigError` naming the setting when one is missing or malformed.
`Settings.names()` is the list the infra tests check against the Bicep and `local.settings.example.json`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.domain.errors import ConfigError

APP_ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDER = re.compile(r"<[A-Za-z][A-Za-z0-9 _-]*>")  # `<storage-account>`, `<tenant-guid>`


# ---------------------------------------------------------------------------------------------------------------
# Parsers: each takes the raw string and returns the typed value or raises ValueError with a reason.
# ---------------------------------------------------------------------------------------------------------------
def _text(raw: str) -> str:
    return raw.strip()


def _int_between(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _timezone(raw: str) -> str:
    try:
        ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("is not an IANA time zone such as Asia/Tokyo") from exc
    return raw.strip()


def _locale(raw: str) -> str:
    if not re.fullmatch(r"[a-z]{2}-[A-Z]{2}", raw.strip()):
        raise ValueError("must look like ja-JP or en-US")
    return raw.strip()


def _url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http(s) URL")
    return value


def _ncrontab(raw: str) -> str:
    if len(raw.split()) != 6:
        raise ValueError("must be a six-field NCRONTAB expression such as '0 0 0 * * *' (UTC)")
    return raw.strip()


def _hours(raw: str) -> tuple[time, time]:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", raw)
    if not match:
        raise ValueError("must look like 09:00-18:00")
    start = time(int(match[1]), int(match[2]))
    end = time(int(match[3]), int(match[4]))
    if start >= end:
        raise ValueError("start must be before end")
    return start, end


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(raw: str) -> frozenset[int]:
    """'mon-fri' or 'mon,wed,fri' → ISO weekday numbers 1..7."""
    days: set[int] = set()
    for part in raw.lower().replace(" ", "").split(","):
        if "-" in part:
            first, last = part.split("-", 1)
            if first not in _DAYS or last not in _DAYS:
                raise ValueError("must name days as mon..sun, e.g. mon-fri")
            lo, hi = _DAYS.index(first), _DAYS.index(last)
            days.update(range(lo + 1, hi + 2))
        elif part in _DAYS:
            days.add(_DAYS.index(part) + 1)
        else:
            raise ValueError("must name days as mon..sun, e.g. mon-fri")
    return frozenset(days)


def _json_map(raw: str) -> Mapping[str, str]:
    if not raw.strip():
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError('must be a JSON object of strings, e.g. {"sales": "https://..."}')
    return dict(value)


def _csv_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _path(raw: str) -> Path:
    path = Path(raw.strip())
    return path if path.is_absolute() else APP_ROOT / path


# The same parsers for files that carry hours, days or zones (the contact policy).
parse_hours, parse_weekdays, parse_timezone = _hours, _weekdays, _timezone


def setting(name: str, parse: Callable[[str], Any] = _text, default: str | None = None, *, doc: str,
            secret: bool = False, required: bool = False) -> Any:
    """Declare one app setting as a dataclass field. `default` is the raw string used when unset."""
    meta = {"name": name, "parse": parse, "default": default, "doc": doc, "secret": secret, "required": required}
    if default is not None:
        parsed = parse(default)
        return field(default_factory=lambda: parsed, metadata=meta)
    return field(default=None, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Typed, validated app settings. Build with `Settings.from_env()`; never mutate."""

    # --- storage ---------------------------------------------------------------------------------------------
    tables_connection_string: str | None = setting(
        "TABLES_CONNECTION_STRING", secret=True,
        doc="Table Storage connection string (Azurite locally). Leave empty in Azure and set TABLES_ACCOUNT_URL.")
    tables_account_url: str | None = setting(
        "TABLES_ACCOUNT_URL", _url,
        doc="Table endpoint for managed-identity access, e.g. https://<account>.table.core.windows.net.")
    table_prefix: str = setting(
        "TABLE_PREFIX", default="",
        doc="Prefix added to every table name (lets tests and several environments share one account).")
    customer_shards: int = setting(
        "CUSTOMER_SHARDS", _int_between(1, 1024), "64",
        doc="Number of customer partitions; the daily sweep evaluates one shard per message. Changing it needs "
            "a re-import.")
    local_dir: Path = setting(
        "LOCAL_DIR", _path, ".local", doc="Where the local host keeps its broker, outbox and Azurite data.")

    # --- customers and rules -------------------------------------------------------------------------------
    default_timezone: str = setting(
        "DEFAULT_TIMEZONE", _timezone, "Asia/Tokyo", doc="Time zone of customers whose record has none.")
    default_locale: str = setting(
        "DEFAULT_LOCALE", _locale, "ja-JP", doc="Locale of customers whose record has none (ja-JP or en-US).")
    rules_dir: Path = setting("RULES_DIR", _path, "rules", doc="Directory of YAML rule files.")
    journeys_dir: Path = setting(
        "JOURNEYS_DIR", _path, "journeys", doc="Directory of the YAML journey definition (customer-success stages).")
    templates_dir: Path = setting("TEMPLATES_DIR", _path, "templates", doc="Directory of Jinja2 templates.")
    segments_file: Path = setting(
        "SEGMENTS_FILE", _path, "segments.yaml", doc="RFM thresholds and labels (rfm.* in rules).")
    mappings_dir: Path = setting(
        "MAPPINGS_DIR", _path, "mappings", doc="Directory of CSV and CRM field mappings.")
    contact_policy_file: Path = setting(
        "CONTACT_POLICY_FILE", _path, "contact_policy.yaml",
        doc="YAML contact policy: caps per channel and category over rolling windows, rep Teams modes. "
            "No file: no caps.")
    teams_delivery_mode: str = setting(
        "TEAMS_DELIVERY_MODE", _one_of("instant", "digest"), "instant",
        doc="How reps get opportunity cards unless the contact policy names their mode: 'instant' (one card per "
            "opportunity) or 'digest' (one card per working day, at the start of the rep's day).")

    # --- pipeline ------------------------------------------------------------------------------------------
    broker: str = setting(
        "BROKER", _one_of("local", "servicebus"), "local",
        doc="Message broker: 'servicebus' in Azure, 'local' (durable SQLite under LOCAL_DIR) on a workstation.")
    servicebus_connection: str | None = setting(
        "ServiceBusConnection", secret=True,
        doc="Service Bus connection string (only where managed identity cannot be used).")
    servicebus_namespace: str | None = setting(
        "ServiceBusConnection__fullyQualifiedNamespace",
        doc="Service Bus namespace host for managed identity, e.g. <name>.servicebus.windows.net.")
    sweep_schedule: str = setting(
        "SWEEP_SCHEDULE", _ncrontab, "0 0 0 * * *",
        doc="NCRONTAB (UTC) of the daily sweep. 0 0 0 * * * is 09:00 in Tokyo.")
    business_hours: tuple[time, time] = setting(
        "BUSINESS_HOURS", _hours, "09:00-18:00", doc="Customer-local hours in which emails are delivered.")
    business_days: frozenset[int] = setting(
        "BUSINESS_DAYS", _weekdays, "mon-fri", doc="Customer-local weekdays on which emails are delivered.")
    functions_key: str | None = setting(
        "FUNCTIONS_KEY", secret=True,
        doc="Function key the local host (crmflow serve) requires on function-level HTTP routes, as ?code= or "
            "x-functions-key; empty: none required. In Azure the platform manages keys.")

    # --- dashboard -----------------------------------------------------------------------------------------
    dashboard_auth: str = setting(
        "DASHBOARD_AUTH", _one_of("key", "app_service", "open"), "key",
        doc="Who may open GET /api/dashboard: 'app_service' = the user App Service Authentication signed in "
            "(X-MS-CLIENT-PRINCIPAL-NAME is trusted only then); 'key' = callers presenting FUNCTIONS_KEY as ?code= "
            "or x-functions-key (nobody when it is empty); 'open' = anyone (the local stack on 127.0.0.1 only).")
    dashboard_refresh_schedule: str = setting(
        "DASHBOARD_REFRESH_SCHEDULE", _ncrontab, "0 */30 * * * *",
        doc="NCRONTAB (UTC) of the timer that rewrites the dashboard snapshot and work list (the sweep also does).")

    # --- delivery ------------------------------------------------------------------------------------------
    delivery_transport: str = setting(
        "DELIVERY_TRANSPORT", _one_of("outbox", "live"), "outbox",
        doc="'live' sends through Graph and Bot Framework; 'outbox' writes .eml and Teams JSON under LOCAL_DIR.")
    graph_tenant_id: str | None = setting("GRAPH_TENANT_ID", doc="Entra tenant id of the Graph app registration.")
    graph_client_id: str | None = setting(
        "GRAPH_CLIENT_ID", doc="Client id of the Graph app registration (or of the user-assigned identity).")
    graph_client_secret: str | None = setting(
        "GRAPH_CLIENT_SECRET", secret=True, doc="Client secret of the Graph app (Key Vault reference in Azure).")
    graph_certificate_path: Path | None = setting(
        "GRAPH_CERTIFICATE_PATH", _path,
        doc="PEM private key of the Graph app's certificate (instead of GRAPH_CLIENT_SECRET).")
    graph_certificate_thumbprint: str | None = setting(
        "GRAPH_CERTIFICATE_THUMBPRINT", doc="SHA-1 thumbprint of the certificate in GRAPH_CERTIFICATE_PATH.")
    graph_use_managed_identity: bool = setting(
        "GRAPH_USE_MANAGED_IDENTITY", _bool, "false", doc="Acquire Graph tokens with the managed identity.")
    authority_host: str = setting(
        "AUTHORITY_HOST", _url, "https://login.microsoftonline.com", doc="Entra ID authority host.")
    graph_base_url: str = setting(
        "GRAPH_BASE_URL", _url, "https://graph.microsoft.com/v1.0", doc="Microsoft Graph endpoint.")
    mail_sender: str | None = setting(
        "MAIL_SENDER", doc="Shared mailbox that sends customer mail (scoped with Exchange RBAC for Applications).")
    bot_app_id: str | None = setting("BOT_APP_ID", doc="Microsoft App ID of the single-tenant Azure Bot.")
    bot_app_secret: str | None = setting("BOT_APP_SECRET", secret=True, doc="Client secret of the bot.")
    bot_tenant_id: str | None = setting("BOT_TENANT_ID", doc="Tenant of the bot and of the reps.")
    bot_service_url: str = setting(
        "BOT_SERVICE_URL", _url, "https://smba.trafficmanager.net/teams",
        doc="Bot Connector service URL for proactive messages.")
    teams_channel_webhooks: Mapping[str, str] = setting(
        "TEAMS_CHANNEL_WEBHOOKS", _json_map, "{}", secret=True,
        doc='Teams Workflows webhook URL per channel name, JSON: {"sales": "https://..."}.')
    public_base_url: str = setting(
        "PUBLIC_BASE_URL", _url, "http://127.0.0.1:7071",
        doc="Public base URL of the app, used in unsubscribe and approval links.")
    unsubscribe_signing_key: str | None = setting(
        "UNSUBSCRIBE_SIGNING_KEY", secret=True, doc="HMAC key that signs unsubscribe and approval links.")
    # Rate limits shared by every instance (RateLimits table). Defaults are Microsoft's documented limits.
    mail_messages_per_minute: int = setting(
        "MAIL_MESSAGES_PER_MINUTE", _int_between(1, 10000), "30",
        doc="Messages per minute the shared mailbox may send (Exchange Online: 30).")
    mail_recipients_per_day: int = setting(
        "MAIL_RECIPIENTS_PER_DAY", _int_between(1, 1000000), "10000",
        doc="Recipients per rolling 24 hours for the shared mailbox (Exchange Online: 10,000).")
    mail_concurrent_requests: int = setting(
        "MAIL_CONCURRENT_REQUESTS", _int_between(1, 64), "4",
        doc="Concurrent Graph requests per mailbox across all instances (Graph Outlook limit: 4).")
    bot_sends_per_second_per_conversation: int = setting(
        "BOT_SENDS_PER_SECOND_PER_CONVERSATION", _int_between(1, 1000), "7",
        doc="Bot messages per second into one conversation (Teams: 7).")
    bot_requests_per_second: int = setting(
        "BOT_REQUESTS_PER_SECOND", _int_between(1, 10000), "50",
        doc="Bot Connector requests per second for the app in the tenant (Teams: 50).")
    webhook_posts_per_second: int = setting(
        "WEBHOOK_POSTS_PER_SECOND", _int_between(1, 1000), "4",
        doc="Posts per second into one Teams Workflows webhook (channel).")
    mail_send_settle_seconds: int = setting(
        "MAIL_SEND_SETTLE_SECONDS", _int_between(0, 3600), "120",
        doc="Seconds to wait before retrying a mail whose send may have been accepted (timeout, reset): a sent mail "
            "sits in the Outbox before it reaches Sent Items, and the retry looks in both first.")
    delivery_max_attempts: int = setting(
        "DELIVERY_MAX_ATTEMPTS", _int_between(1, 100), "8",
        doc="Send attempts after timeouts/5xx (exponential backoff with jitter) before a delivery is failed.")

    # --- approvals -----------------------------------------------------------------------------------------
    app_service_auth_enabled: bool = setting(
        "APP_SERVICE_AUTH_ENABLED", _bool, "false",
        doc="App Service authentication (Entra sign-in) is on in front of the approval pages: only then is "
            "X-MS-CLIENT-PRINCIPAL-NAME trusted, and the signed-in person must be the approval's owner or manager.")
    approval_ttl_days: int = setting(
        "APPROVAL_TTL_DAYS", _int_between(1, 90), "7",
        doc="Days an approval request stays open; unanswered, it expires and the held message is never sent.")

    # --- CRM webhooks and write-back ------------------------------------------------------------------------
    hubspot_client_secret: str | None = setting(
        "HUBSPOT_CLIENT_SECRET", secret=True, doc="HubSpot app client secret (X-HubSpot-Signature-v3).")
    zoho_webhook_token: str | None = setting(
        "ZOHO_WEBHOOK_TOKEN", secret=True, doc="Shared token Zoho sends with its webhook.")
    salesforce_org_ids: tuple[str, ...] = setting(
        "SALESFORCE_ORG_IDS", _csv_list, "", doc="Comma-separated Salesforce organisation ids allowed to call.")
    generic_webhook_secret: str | None = setting(
        "GENERIC_WEBHOOK_SECRET", secret=True, doc="HMAC-SHA256 key of the generic webhook.")
    dataverse_url: str | None = setting(
        "DATAVERSE_URL", _url, doc="Dataverse org URL, e.g. https://contoso.crm7.dynamics.com (re-query, tasks).")
    crm_task_target: str = setting(
        "CRM_TASK_TARGET", _one_of("local", "dataverse"), "local",
        doc="Where crm_task actions go: the local Tasks table or Dataverse tasks.")

    # --- housekeeping ---------------------------------------------------------------------------------------
    audit_retention_days: int = setting(
        "AUDIT_RETENTION_DAYS", _int_between(1, 3650), "400",
        doc="Days the delivery audit rows are kept (the daily cleanup deletes older ones; tables have no TTL).")

    # --- observability -------------------------------------------------------------------------------------
    log_level: str = setting(
        "LOG_LEVEL", _one_of("debug", "info", "warning", "error"), "info", doc="Application log level.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Parse and validate every setting; raise ConfigError naming the first bad one."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            meta = f.metadata
            raw = source.get(meta["name"])
            if raw is None or (raw.strip() == "" and meta["default"] is None):
                if meta["required"]:
                    raise ConfigError(f"app setting {meta['name']} is required: {meta['doc']}")
                continue
            if not meta["secret"] and _PLACEHOLDER.search(raw):
                # A value copied from an example (`https://<account>.table...`) would send the app to a real
                # service that does not exist, failing later with a long credential traceback.
                raise ConfigError(f"app setting {meta['name']}={raw!r} is a placeholder: put the real value, or "
                                  "leave it empty")
            if raw.lstrip().startswith("@Microsoft.KeyVault("):
                # App Service leaves the reference text in place when it cannot resolve it; using it as a
                # value (a predictable signing key, say) would be worse than not starting.
                raise ConfigError(f"app setting {meta['name']} is an unresolved Key Vault reference: check the "
                                  "secret exists and the app's identity has Key Vault Secrets User")
            try:
                values[f.name] = meta["parse"](raw)
            except (ValueError, json.JSONDecodeError) as exc:
                shown = "<secret>" if meta["secret"] else repr(raw)
                raise ConfigError(f"app setting {meta['name']}={shown} {exc}") from None
        settings = cls(**values)
        settings._check_combinations()
        return settings

    def _check_combinations(self) -> None:
        if not (self.tables_connection_string or self.tables_account_url):
            raise ConfigError("app setting TABLES_CONNECTION_STRING or TABLES_ACCOUNT_URL is required")
        if self.broker == "servicebus" and not (self.servicebus_connection or self.servicebus_namespace):
            raise ConfigError(
                "BROKER=servicebus needs app setting ServiceBusConnection__fullyQualifiedNamespace "
                "(or ServiceBusConnection)")
        if self.crm_task_target == "dataverse" and not self.dataverse_url:
            raise ConfigError("CRM_TASK_TARGET=dataverse needs app setting DATAVERSE_URL")

    @classmethod
    def names(cls) -> list[str]:
        """Every app-setting name the code reads."""
        return [f.metadata["name"] for f in fields(cls)]

    @classmethod
    def specs(cls) -> list[dict]:
        """Name, doc, default and secrecy of every setting (for docs and the infra consistency test)."""
        return [
            {k: f.metadata[k] for k in ("name", "doc", "default", "secret", "required")} for f in fields(cls)
        ]

    def replace(self, **changes: Any) -> Settings:
        """A copy with some typed values changed (tests, CLI overrides)."""
        from dataclasses import replace

        return replace(self, **changes)
