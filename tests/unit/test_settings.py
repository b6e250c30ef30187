"""Settings: one frozen object, validated at cold start, names defined once and documented."""

from __future__ import annotations

import dataclasses
import json
from datetime import time
from pathlib import Path

import pytest

from shared.domain.errors import ConfigError
from shared.settings import APP_ROOT, Settings

BASE = {"TABLES_CONNECTION_STRING": "UseDevelopmentStorage=true"}


def test_defaults_are_sensible():
    settings = Settings.from_env(BASE)
    assert settings.default_timezone == "Asia/Tokyo"
    assert settings.sweep_schedule == "0 0 0 * * *"
    assert settings.business_hours == (time(9), time(18))
    assert settings.business_days == frozenset({1, 2, 3, 4, 5})
    assert settings.broker == "local" and settings.delivery_transport == "outbox"
    assert settings.rules_dir == APP_ROOT / "rules"


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings.from_env(BASE).broker = "servicebus"


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("CUSTOMER_SHARDS", "0", "between 1 and 1024"),
    ("CUSTOMER_SHARDS", "many", "CUSTOMER_SHARDS"),
    ("DEFAULT_TIMEZONE", "Mars/Olympus", "IANA"),
    ("BUSINESS_HOURS", "18:00-09:00", "start must be before end"),
    ("BUSINESS_DAYS", "mon-fry", "mon..sun"),
    ("SWEEP_SCHEDULE", "0 0 * * *", "six-field"),
    ("BROKER", "kafka", "local, servicebus"),
    ("TEAMS_CHANNEL_WEBHOOKS", "[1]", "JSON object"),
    ("PUBLIC_BASE_URL", "ftp://x", "http(s) URL"),
])
def test_bad_values_name_the_setting(name, value, fragment):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, name: value})
    assert name in str(info.value) and fragment in str(info.value)


def test_secret_values_are_not_echoed_in_errors():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "TEAMS_CHANNEL_WEBHOOKS": "not-json-secret-url"})
    assert "not-json-secret-url" not in str(info.value) and "<secret>" in str(info.value)


def test_missing_storage_and_incomplete_combinations_fail_at_cold_start():
    with pytest.raises(ConfigError, match="TABLES_CONNECTION_STRING or TABLES_ACCOUNT_URL"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="ServiceBusConnection__fullyQualifiedNamespace"):
        Settings.from_env({**BASE, "BROKER": "servicebus"})
    with pytest.raises(ConfigError, match="DATAVERSE_URL"):
        Settings.from_env({**BASE, "CRM_TASK_TARGET": "dataverse"})


def test_every_setting_is_documented_in_local_settings_example():
    example = json.loads((APP_ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    names = set(Settings.names())
    assert names <= set(example["Values"]), names - set(example["Values"])
    assert names <= set(example["Documentation"]), names - set(example["Documentation"])
    assert len(Settings.names()) == len(names), "a setting name is defined twice"


def test_example_holds_no_secret_values():
    example = json.loads((APP_ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    for spec in Settings.specs():
        if spec["secret"] and spec["name"] != "TEAMS_CHANNEL_WEBHOOKS":
            assert example["Values"][spec["name"]] == "", spec["name"]


def test_settings_module_is_the_only_place_names_are_read():
    offenders = []
    for path in Path(APP_ROOT, "shared").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "os.environ[" in text or "os.getenv(" in text:
            offenders.append(path.name)
    assert offenders == []


def test_unresolved_key_vault_reference_fails_at_cold_start():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/unsubscribe-signing-key/)"
    with pytest.raises(ConfigError, match="UNSUBSCRIBE_SIGNING_KEY is an unresolved Key Vault reference"):
        Settings.from_env({**BASE, "UNSUBSCRIBE_SIGNING_KEY": reference})
