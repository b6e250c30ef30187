"""One source of truth for app settings: every name `Settings` reads (read at test time, so settings added later are
caught) is provisioned by infra/main.bicep — secrets as Key Vault references — and documented in
local.settings.example.json, unless it is on the explicit allow-list of settings that stay unset in Azure."""

from __future__ import annotations

import json
import re

import pytest

from shared.domain.errors import ConfigError
from shared.settings import APP_ROOT, Settings
from tests.unit import infra_checks as checks
from tests.unit.bicep_outline import Expr, Obj, load, references

MAIN = APP_ROOT / "infra" / "main.bicep"
FUNCTION_APP = APP_ROOT / "infra" / "app" / "function-app.bicep"

# Settings the code reads that are deliberately not set in Azure, and why (docs/deploy.md repeats this list).
ALLOWED_UNSET_IN_AZURE = {
    "TABLES_CONNECTION_STRING": "Azure uses TABLES_ACCOUNT_URL with the managed identity; no storage keys exist.",
    "ServiceBusConnection": "Identity-based connection: ServiceBusConnection__fullyQualifiedNamespace; SAS is off.",
    "LOCAL_DIR": "Only the local broker and outbox write there; Azure uses Service Bus and live delivery.",
    "TABLE_PREFIX": "One environment per storage account; tables are created without a prefix by the Bicep.",
    "GRAPH_CERTIFICATE_PATH": "Certificates are for self-hosted runs; Azure uses the managed identity or the secret.",
    "GRAPH_CERTIFICATE_THUMBPRINT": "Goes with GRAPH_CERTIFICATE_PATH, which Azure does not use.",
    "FUNCTIONS_KEY": "The local host (crmflow serve) checks it; in Azure the platform checks function keys. The "
                     "dashboard uses it only with DASHBOARD_AUTH=key (no App Service authentication): set it by hand.",
}

# Settings the Bicep sets for the Functions host and the platform, not read by shared/settings.py.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
    "ServiceBusConnection__credential", "ServiceBusConnection__clientId", "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID",
}

# Where Azure deliberately differs from the code's (local-first) defaults.
AZURE_VALUES = {"BROKER": "servicebus", "DELIVERY_TRANSPORT": "live"}
# Values the Bicep computes from the deployment's choices, and from which.
COMPUTED_IN_AZURE = {"DASHBOARD_AUTH": "'app_service' exactly when App Service authentication is on (authClientId)"}


@pytest.fixture(scope="module")
def main():
    return load(MAIN)


@pytest.fixture(scope="module")
def app_settings(main) -> Obj:
    settings = main.vars["appSettings"]
    assert isinstance(settings, Obj), "main.bicep builds the app settings in var appSettings"
    return settings


def test_every_setting_the_code_reads_is_provisioned_or_explicitly_allowed_unset(main, app_settings):
    problems = checks.settings_problems(app_settings, Settings.specs(), ALLOWED_UNSET_IN_AZURE, PLATFORM_SETTINGS,
                                        main.vars["secretValues"])
    assert problems == []


def test_the_app_gets_the_settings_built_in_main(main):
    function_app = load(FUNCTION_APP)
    assert main.modules["functionApp"].params["appSettings"].reference == "appSettings"
    config = next(r for r in function_app.resources_of_type("Microsoft.Web/sites/config")
                  if r.obj.literal("name") == "appsettings")
    assert config.obj.get("properties").text.startswith("union ( appSettings ,")
    extra = set(re.findall(r"\{ (\w+) :", config.obj.get("properties").text))
    assert extra <= PLATFORM_SETTINGS, extra - PLATFORM_SETTINGS


def test_every_setting_is_documented_in_local_settings_example():
    example = json.loads((APP_ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    for name in Settings.names():
        assert name in example["Values"] and example["Documentation"].get(name), name


def test_the_allow_list_is_documented_in_the_deploy_guide():
    guide = (APP_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name in ALLOWED_UNSET_IN_AZURE:
        assert f"`{name}`" in guide, name


def test_identity_connections_use_the_user_assigned_identity(app_settings):
    for prefix in ("AzureWebJobsStorage", "ServiceBusConnection"):
        assert app_settings.literal(f"{prefix}__credential") == "managedidentity"
        assert app_settings.get(f"{prefix}__clientId").text == "identity . outputs . clientId"
    assert app_settings.get("AzureWebJobsStorage__accountName").text == "storage . outputs . name"
    assert app_settings.get("ServiceBusConnection__fullyQualifiedNamespace").text == \
        "serviceBus . outputs . fullyQualifiedNamespace"
    assert app_settings.get("AZURE_CLIENT_ID").text == "identity . outputs . clientId"
    assert app_settings.get("TABLES_ACCOUNT_URL").text == "storage . outputs . tableEndpoint"


def test_non_secret_settings_never_carry_secure_params(main, app_settings):
    secure = {p.name for p in main.params.values() if p.secure}
    for name, value in app_settings.entries.items():
        for expr in checks._expressions_of(value):
            assert not {t.text for t in references(expr)} & secure, name


def test_azure_values_and_defaults_agree_with_the_code(main, app_settings):
    """Literals and main.bicep param defaults equal Settings defaults, except the deliberate Azure values."""
    for spec in Settings.specs():
        value = app_settings.entries.get(spec["name"])
        if value is None or checks.key_vault_reference(value) or spec["default"] is None \
                or spec["name"] in COMPUTED_IN_AZURE:
            continue
        expected = AZURE_VALUES.get(spec["name"], spec["default"])
        if value.is_literal():
            assert value.literal == expected, spec["name"]
            continue
        params = {t.text for t in references(value)} & set(main.params)
        if len(params) == 1:
            default = main.params[params.pop()].default
            if isinstance(default, Expr) and default.is_literal():
                literal = default.literal
                shown = str(literal).lower() if isinstance(literal, bool) else str(literal)
                assert shown == expected, f"{spec['name']}: main.bicep default {shown!r}, code default {expected!r}"
    for name, value in AZURE_VALUES.items():
        assert app_settings.literal(name) == value


# Values Bicep computes at deployment (resource endpoints, ids): samples of their shape, never contacted.
# local.settings.example.json leaves these empty so that a copy of it runs locally.
DEPLOYMENT_SAMPLES = {
    "TABLES_ACCOUNT_URL": "https://stcrmflowsample.table.core.windows.net",
    "ServiceBusConnection__fullyQualifiedNamespace": "sb-crmflow-sample.servicebus.windows.net",
    "GRAPH_TENANT_ID": "00000000-0000-0000-0000-000000000001",
    "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
    "BOT_APP_ID": "00000000-0000-0000-0000-000000000003", "BOT_TENANT_ID": "00000000-0000-0000-0000-000000000001",
    "DATAVERSE_URL": "https://sample.crm7.dynamics.com", "SALESFORCE_ORG_IDS": "00D000000000001AAA",
}


def _sample_env(app_settings: Obj) -> dict[str, str]:
    """App settings as the app would see them in Azure, with samples for values known only at deployment."""
    example = {**json.loads((APP_ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"],
               **DEPLOYMENT_SAMPLES}
    env = {}
    for name, value in app_settings.entries.items():
        if checks.key_vault_reference(value):
            env[name] = "{}" if name == "TEAMS_CHANNEL_WEBHOOKS" else "resolved-secret-value"
        elif isinstance(value, Expr) and value.is_literal():
            env[name] = str(value.literal)
        elif example.get(name):
            env[name] = example[name]
    return env


def test_the_azure_configuration_passes_cold_start_validation(app_settings):
    settings = Settings.from_env(_sample_env(app_settings))
    assert settings.broker == "servicebus" and settings.delivery_transport == "live"
    assert settings.tables_account_url and not settings.tables_connection_string
    assert settings.servicebus_namespace and not settings.servicebus_connection


def test_the_consistency_check_catches_drift():
    app_settings = Obj({
        "BROKER": Expr([]),
        "GRAPH_CLIENT_SECRET": load(MAIN).vars["appSettings"].entries["BOT_APP_SECRET"],
        "HUBSPOT_CLIENT_SECRET": load(MAIN).vars["appSettings"].entries["BROKER"],
        "LOCAL_DIR": Expr([]),
        "GRAPH_TENANTID": Expr([]),
    })
    specs = [
        {"name": "BROKER", "secret": False}, {"name": "NEW_SETTING", "secret": False},
        {"name": "GRAPH_CLIENT_SECRET", "secret": True}, {"name": "HUBSPOT_CLIENT_SECRET", "secret": True},
        {"name": "LOCAL_DIR", "secret": False},
    ]
    problems = " | ".join(checks.settings_problems(
        app_settings, specs, {"LOCAL_DIR": "local only", "GONE": "removed"}, set(), Obj({"orphan": Expr([])})))
    assert "NEW_SETTING: read by the code but not provisioned" in problems
    assert "GRAPH_CLIENT_SECRET: refers to secret bot-app-secret" in problems
    assert "HUBSPOT_CLIENT_SECRET: secret, but its app setting is not a Key Vault reference" in problems
    assert "LOCAL_DIR: allowed unset in Azure, yet the Bicep sets it" in problems
    assert "GONE: allowed unset in Azure but not a setting" in problems
    assert "GRAPH_TENANTID: set by the Bicep but neither read" in problems
    assert "secret orphan: created in the vault but no app setting refers to it" in problems


def test_a_new_setting_in_the_code_would_fail_the_check(main, app_settings):
    specs = [*Settings.specs(), {"name": "SOMETHING_NEW", "secret": False, "default": None, "doc": "",
                                 "required": False}]
    problems = checks.settings_problems(app_settings, specs, ALLOWED_UNSET_IN_AZURE, PLATFORM_SETTINGS,
                                        main.vars["secretValues"])
    assert problems == ["SOMETHING_NEW: read by the code but not provisioned by the Bicep"]


def test_settings_validation_rejects_a_bad_azure_value(app_settings):
    env = _sample_env(app_settings)
    env["BROKER"] = "kafka"
    with pytest.raises(ConfigError):
        Settings.from_env(env)
