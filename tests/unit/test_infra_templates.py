"""Structural tests of infra/ (no Bicep compiler here): wiring, identifiers, secrets, security defaults, queues and
tables, role assignments, App Service authentication, azd files. What they do not prove is listed in README.md."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from shared.domain.names import QUEUES, TABLES
from shared.settings import APP_ROOT
from tests.unit import infra_checks as checks
from tests.unit.bicep_outline import Expr, Obj, _Parser, module_tree, references, tokenize
from tests.unit.infra_checks import _expressions_of

INFRA = APP_ROOT / "infra"
MAIN = INFRA / "main.bicep"

ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Azure Service Bus Data Sender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "Azure Service Bus Data Receiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

# Each data-plane access the code (or the Functions host on its behalf) makes → the role and scope it needs.
DATA_PLANE_ACCESS = {
    "Flex deployment package and host blobs": ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts"),
    "tables read/write (shared/storage)": ("Storage Table Data Contributor", "Microsoft.Storage/storageAccounts"),
    "Functions host queues": ("Storage Queue Data Contributor", "Microsoft.Storage/storageAccounts"),
    "publish to queues (Broker.publish)": ("Azure Service Bus Data Sender", "Microsoft.ServiceBus/namespaces"),
    "Service Bus triggers receive/settle": ("Azure Service Bus Data Receiver", "Microsoft.ServiceBus/namespaces"),
    "Key Vault references": ("Key Vault Secrets User", "Microsoft.KeyVault/vaults"),
    "Application Insights with Entra ID": ("Monitoring Metrics Publisher", "Microsoft.Insights/components"),
}

# DESIGN.md routes that CRMs and customers call without an Entra sign-in, and routes only staff may use.
ANONYMOUS_ROUTES = {"/api/crm/dataverse", "/api/crm/hubspot", "/api/crm/zoho", "/api/crm/salesforce",
                    "/api/crm/generic", "/api/unsubscribe", "/api/health", "/api/openapi.json",
                    # The Teams tabs' entry page (no data; it starts Teams' sign-in pop-up) and the SDK it loads.
                    "/api/teams/tab", "/api/teams/teams.js"}
SIGNED_IN_ROUTES = {"/api/dashboard", "/api/opportunities", "/api/approvals"}


@pytest.fixture(scope="module")
def tree():
    return module_tree(MAIN)


@pytest.fixture(scope="module")
def main(tree):
    return tree[MAIN.resolve()]


def by_name(tree, name):
    return next(f for p, f in tree.items() if p.name == name)


def mentioned(f, node) -> set[str]:
    """Identifiers a value refers to, following vars."""
    names: set[str] = set()
    for expr in _expressions_of(node):
        for token in references(expr):
            if token.text not in names:
                names.add(token.text)
                if token.text in f.vars:
                    names |= mentioned(f, f.vars[token.text])
    return names


def parse(source: str):
    return _Parser(tokenize(source), Path("snippet.bicep")).parse()


# --- layout --------------------------------------------------------------------------------------------------------
def test_azd_layout_exists():
    for relative in ("infra/main.bicep", "infra/main.parameters.json", "infra/abbreviations.json", "azure.yaml",
                     "infra/names.json", "docs/deploy.md"):
        assert (APP_ROOT / relative).is_file(), relative


def test_every_bicep_file_is_reached_from_main(tree):
    on_disk = {p.resolve() for p in INFRA.rglob("*.bicep")}
    assert on_disk - set(tree) == set(), "Bicep files no module uses"


def test_main_targets_the_subscription_and_names_come_from_the_resource_token(main):
    assert main.target_scope == "subscription"
    assert "uniqueString ( subscription ( ) . id , environmentName , location )" in main.vars["resourceToken"].text
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text(encoding="utf-8"))
    assert main.vars["abbrs"].text == "loadJsonContent ( './abbreviations.json' )"
    for module in main.modules.values():
        name = module.obj.get("params", "name")
        if name is not None:
            assert "resourceToken" in mentioned(main, name), f"{module.symbol}: name does not use the resource token"
    used = set(re.findall(r"abbrs\.(\w+)", MAIN.read_text(encoding="utf-8")))
    assert used <= set(abbreviations), used - set(abbreviations)


# --- wiring --------------------------------------------------------------------------------------------------------
def test_modules_exist_and_their_params_and_outputs_match(tree):
    assert checks.module_problems(tree) == []


def test_identifiers_are_declared_and_params_used(tree):
    problems = []
    for f in tree.values():
        problems += checks.identifier_problems(f) + checks.unused_params(f)
    assert problems == []


def test_wiring_checks_catch_mistakes(tmp_path):
    (tmp_path / "child.bicep").write_text("param needed string\nparam other string = 'x'\noutput id string = needed\n")
    (tmp_path / "main.bicep").write_text(
        "param unused string\n"
        "module a 'child.bicep' = {\n  name: 'a'\n  params: {\n    other: 'y'\n    typo: 'z'\n  }\n}\n"
        "module b 'missing.bicep' = {\n  name: 'b'\n}\n"
        "var v = a.outputs.nothing\nvar w = undeclared\nvar x = tolower('A')\n")
    tree = module_tree(tmp_path / "main.bicep")
    problems = " | ".join(checks.module_problems(tree))
    assert "missing.bicep does not exist" in problems
    assert "passes typo" in problems and "required param needed" in problems
    assert "has no output nothing" in problems
    f = tree[(tmp_path / "main.bicep").resolve()]
    identifier_problems = " | ".join(checks.identifier_problems(f))
    assert "undeclared is not declared" in identifier_problems
    assert "tolower() is not a Bicep function" in identifier_problems
    assert checks.unused_params(f) == ["main.bicep:1: param unused is never used"]


def test_parameters_file_maps_declared_params_and_covers_required_ones(main):
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(parameters) <= set(main.params), set(parameters) - set(main.params)
    required = {p.name for p in main.params.values() if p.required}
    assert required <= set(parameters), required - set(parameters)
    for name, entry in parameters.items():
        if main.params[name].secure:
            # azd substitutes the environment variable: the file never holds a secret value.
            assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", entry["value"]), name


# --- secrets -------------------------------------------------------------------------------------------------------
def test_no_secret_has_a_default_or_leaks_through_an_output(tree):
    problems = []
    for f in tree.values():
        problems += checks.secret_param_problems(f)
    assert problems == []
    assert sum(p.secure for p in tree[MAIN.resolve()].params.values()) >= 7


def test_secret_checks_catch_mistakes():
    f = parse("@secure()\nparam apiSecret string = 'hunter2'\nparam botToken string\n"
              "output leaked string = apiSecret\n")
    problems = " | ".join(checks.secret_param_problems(f))
    assert "apiSecret has a default value" in problems
    assert "botToken looks secret but is not @secure()" in problems
    assert "output leaked exposes apiSecret" in problems


def test_vault_secrets_come_only_from_secure_params(main, tree):
    secret_values = main.vars["secretValues"]
    assert isinstance(secret_values, Obj)
    for name, value in secret_values.entries.items():
        assert re.fullmatch(r"[a-z0-9-]+", name), name
        assert isinstance(value, Expr) and main.params[value.reference].secure, name
    vault = by_name(tree, "key-vault.bicep")
    assert vault.params["secretValues"].secure
    assert main.modules["keyVault"].params["secretValues"].reference == "secretValues"


def test_preprovision_hooks_fill_every_secret_parameter(main):
    parameters = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    env_names = {parameters[p.name]["value"][2:-1] for p in main.params.values() if p.secure}
    for script in ("preprovision.sh", "preprovision.ps1"):
        text = (INFRA / "scripts" / script).read_text(encoding="utf-8")
        missing = {name for name in env_names if name not in text}
        assert missing == set(), f"{script} does not fill {missing}"


# --- security defaults ---------------------------------------------------------------------------------------------
def test_storage_uses_entra_id_only(tree):
    storage = by_name(tree, "storage-account.bicep").resources["storage"].obj
    assert storage.literal("properties", "allowSharedKeyAccess") is False
    assert storage.literal("properties", "allowBlobPublicAccess") is False
    assert storage.literal("properties", "minimumTlsVersion") == "TLS1_2"
    assert storage.literal("properties", "defaultToOAuthAuthentication") is True


def test_local_auth_is_disabled_wherever_supported(tree):
    namespace = by_name(tree, "service-bus.bicep").resources["namespace"].obj
    assert namespace.literal("properties", "disableLocalAuth") is True
    assert namespace.literal("sku", "name") == "Standard"
    monitoring = by_name(tree, "monitoring.bicep")
    assert monitoring.resources["appInsights"].obj.literal("properties", "DisableLocalAuth") is True
    assert monitoring.resources["workspace"].obj.literal("properties", "features", "disableLocalAuth") is True
    assert by_name(tree, "azure-bot.bicep").resources["bot"].obj.literal("properties", "disableLocalAuth") is True
    vault = by_name(tree, "key-vault.bicep").resources["vault"].obj
    assert vault.literal("properties", "enableRbacAuthorization") is True
    assert vault.literal("properties", "enableSoftDelete") is True


def test_function_app_is_flex_consumption_python_311_with_the_user_assigned_identity(tree, main):
    app = by_name(tree, "function-app.bicep")
    plan = app.resources["plan"].obj
    assert (plan.literal("sku", "tier"), plan.literal("sku", "name")) == ("FlexConsumption", "FC1")
    assert plan.literal("properties", "reserved") is True
    site = app.resources["site"].obj
    assert site.literal("kind") == "functionapp,linux"
    assert site.literal("identity", "type") == "UserAssigned"
    assert site.literal("properties", "httpsOnly") is True
    assert site.get("properties", "keyVaultReferenceIdentity").reference == "identityId"
    config = site.get("properties", "functionAppConfig")
    assert config.literal("runtime", "name") == "python" and config.literal("runtime", "version") == "3.11"
    assert config.get("scaleAndConcurrency", "instanceMemoryMB").reference == "instanceMemoryMB"
    assert config.get("scaleAndConcurrency", "maximumInstanceCount").reference == "maximumInstanceCount"
    storage = config.get("deployment", "storage")
    assert storage.literal("type") == "blobContainer"
    assert storage.literal("authentication", "type") == "UserAssignedIdentity"
    assert storage.get("authentication", "userAssignedIdentityResourceId").reference == "identityId"
    for name in ("instanceMemoryMB", "maximumInstanceCount"):
        assert main.modules["functionApp"].params[name].reference == name, f"{name} is a main.bicep parameter"
    assert main.params["instanceMemoryMB"].decorators["allowed"] is not None
    policies = app.resources_of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(p.obj.literal("name") for p in policies) == ["ftp", "scm"]
    assert all(p.obj.literal("properties", "allow") is False for p in policies)


def test_app_settings_avoid_what_flex_consumption_rejects(main):
    settings = main.vars["appSettings"].entries
    # Flex takes the runtime from functionAppConfig and has no time-zone support (timers run in UTC).
    for forbidden in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_TIME_ZONE",
                      "WEBSITE_RUN_FROM_PACKAGE", "AzureWebJobsStorage", "ServiceBusConnection"):
        assert forbidden not in settings, forbidden


# --- queues and tables ---------------------------------------------------------------------------------------------
def test_names_json_is_shared_names():
    names = json.loads((INFRA / "names.json").read_text(encoding="utf-8"))
    assert names["queues"] == list(QUEUES) and names["tables"] == list(TABLES)


def test_every_queue_and_table_is_declared(tree, main):
    assert main.vars["names"].text == "loadJsonContent ( './names.json' )"
    service_bus = by_name(tree, "service-bus.bicep")
    (queues,) = service_bus.resources_of_type("Microsoft.ServiceBus/namespaces/queues")
    assert queues.body.iterable.reference == "queueNames"
    assert main.modules["serviceBus"].params["queueNames"].text == "names . queues"
    storage = by_name(tree, "storage-account.bicep")
    (tables,) = storage.resources_of_type("Microsoft.Storage/storageAccounts/tableServices/tables")
    assert tables.body.iterable.reference == "tableNames"
    assert main.modules["storage"].params["tableNames"].text == "names . tables"


def _iso_duration(text: str) -> timedelta:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    assert match and text not in {"P", "PT"}, f"not an ISO 8601 duration: {text}"
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def test_queues_have_duplicate_detection_bounded_delivery_and_dead_lettering(tree, main):
    queue = by_name(tree, "service-bus.bicep").resources["queues"].obj
    assert queue.literal("properties", "requiresDuplicateDetection") is True
    assert queue.literal("properties", "deadLetteringOnMessageExpiration") is True
    assert queue.literal("properties", "requiresSession") is False
    for prop, param in (("duplicateDetectionHistoryTimeWindow", "duplicateDetectionWindow"),
                        ("maxDeliveryCount", "maxDeliveryCount"), ("lockDuration", "lockDuration"),
                        ("defaultMessageTimeToLive", "messageTimeToLive")):
        assert queue.get("properties", prop).reference == param
        assert main.modules["serviceBus"].params[param].reference == param, f"{param} is a main.bicep parameter"
    window = _iso_duration(main.params["duplicateDetectionWindow"].default.literal)
    assert timedelta(seconds=20) <= window <= timedelta(days=7)
    # Replays of a signed webhook are absorbed by duplicate detection: the window must span every moment a
    # signature is accepted in (its timestamp ± the signature window).
    from shared.crm.common import SIGNATURE_WINDOW_SECONDS

    assert window >= timedelta(seconds=2 * SIGNATURE_WINDOW_SECONDS)
    assert _iso_duration(main.params["lockDuration"].default.literal) <= timedelta(minutes=5)
    assert main.params["maxDeliveryCount"].default.literal == 10


# --- role assignments ----------------------------------------------------------------------------------------------
def test_role_assignments_are_well_formed(tree):
    problems = []
    for f in tree.values():
        problems += checks.role_assignments(f)[1]
    assert problems == []


def test_each_data_plane_access_has_its_role_for_the_app_identity(tree, main):
    granted = set()
    for f in tree.values():
        for assignment in checks.role_assignments(f)[0]:
            if assignment["principal"] == "appPrincipalId" and not assignment["conditional"]:
                assert assignment["principal_type"] == "'ServicePrincipal'", assignment["symbol"]
                granted.add((assignment["role"], assignment["scope_type"]))
    for access, (role, scope) in DATA_PLANE_ACCESS.items():
        assert (ROLES[role], scope) in granted, f"{access}: {role} on {scope} missing"
    # ... and every module's appPrincipalId is the one user-assigned identity.
    for module in main.modules.values():
        if "appPrincipalId" in module.params:
            assert module.params["appPrincipalId"].text == "identity . outputs . principalId", module.symbol
    assert [m.path for m in main.modules.values()].count("core/identity/user-assigned-identity.bicep") == 1


def test_role_assignment_check_catches_mistakes():
    f = parse("var roles = {\n"
              "  a: '11111111-1111-1111-1111-111111111111'\n  b: '22222222-2222-2222-2222-222222222222'\n}\n"
              "param principalId string\n"
              "resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n}\n"
              "resource other 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'y'\n}\n"
              "resource r1 'Microsoft.Authorization/roleAssignments@2022-04-01' = {\n"
              "  name: guid(st.id, principalId, roles.a)\n  scope: other\n  properties: {\n"
              "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.b)\n"
              "    principalId: principalId\n  }\n}\n"
              "resource r2 'Microsoft.Authorization/roleAssignments@2022-04-01' = {\n  name: 'fixed-name'\n}\n")
    problems = " | ".join(checks.role_assignments(f)[1])
    assert "r1: scope is not st" in problems
    assert "r1: role in name (11111111" in problems
    assert "r2: name is not guid" in problems


# --- App Service authentication ------------------------------------------------------------------------------------
def test_entra_sign_in_is_optional_and_leaves_webhooks_reachable(tree, main):
    app = by_name(tree, "function-app.bicep")
    auth = app.resources["auth"]
    assert auth.conditional and auth.body.condition.text == "enableAuth"
    assert app.vars["enableAuth"].text == "! empty ( authClientId )"
    assert main.params["authClientId"].default.literal == ""
    validation = auth.obj.get("properties", "globalValidation")
    assert validation.literal("requireAuthentication") is True
    assert validation.get("excludedPaths").reference == "anonymousPaths"
    anonymous = {item.literal for item in main.vars["anonymousPaths"].items}
    assert anonymous == ANONYMOUS_ROUTES
    assert not any(path.startswith(route) for path in anonymous for route in SIGNED_IN_ROUTES)
    registration = auth.obj.get("properties", "identityProviders", "azureActiveDirectory", "registration")
    # No client secret: the managed identity is a federated credential of the sign-in app registration.
    assert registration.literal("clientSecretSettingName") == "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"


# --- azd -----------------------------------------------------------------------------------------------------------
def test_azure_yaml_deploys_the_tagged_function_app(tree):
    azure = yaml.safe_load((APP_ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    (service_name, service), = azure["services"].items()
    assert service == {"project": ".", "language": "python", "host": "function"}
    site = by_name(tree, "function-app.bicep").resources["site"].obj
    assert f"'azd-service-name' : '{service_name}'" in site.get("tags").text
    for hook in azure["hooks"]["preprovision"].values():
        assert (APP_ROOT / hook["run"]).is_file()


def test_deployment_package_leaves_out_local_files():
    ignored = (APP_ROOT / ".funcignore").read_text(encoding="utf-8").split()
    for entry in ("tests", "infra", "docs", ".venv", "node_modules", ".local", "local.settings.json", ".azure"):
        assert entry in ignored, entry
    assert ".azure/" in (APP_ROOT / ".gitignore").read_text(encoding="utf-8").split()
