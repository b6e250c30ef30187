"""Approval ids, request keys, masking, and the APPROVAL_TTL_DAYS setting in all three places."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.approvals.flow import approval_id, mask_address, preview_text, request_key
from shared.domain.errors import ConfigError
from shared.domain.messages import ActionMessage
from shared.settings import APP_ROOT, Settings


def test_ids_are_deterministic_safe_and_distinct():
    key = "renewal-reminder:C-001:w30-2026-12-24.a0"
    assert approval_id(key) == approval_id(key) != approval_id(key.replace("a0", "a1"))
    assert approval_id(key).isalnum() and len(approval_id(key)) == 34


def test_request_keys_stay_within_service_bus_limits():
    assert request_key("r:C-1:2026.a0") == "r:C-1:2026.a0~ap"
    long_a = "x" * 120 + ".a0"
    long_b = "x" * 120 + ".a1"
    assert len(request_key(long_a)) <= 128 and request_key(long_a).endswith("~ap")
    assert request_key(long_a) != request_key(long_b) and request_key(long_a) == request_key(long_a)


@pytest.mark.parametrize(("address", "masked"), [
    ("taro@example.co.jp", "t***@example.co.jp"), ("a@b.example", "a***@b.example"),
    ("channel:sales", "channel:sales"), ("", ""), (None, "")])
def test_addresses_are_masked(address, masked):
    assert mask_address(address) == masked


def test_preview_is_one_bounded_line():
    message = ActionMessage(dedupe_key="k", channel="email", rule="r", kind="lifecycle", customer_id="C", to="x@y.z",
                            subject="s", content={"text": "一行目\n" + "本文" * 500}, planned_at=datetime.now(UTC))
    preview = preview_text(message)
    assert "\n" not in preview and len(preview) == 280 and preview.endswith("…")


def test_ttl_setting_is_declared_documented_and_provisioned():
    assert Settings.from_env({"TABLES_CONNECTION_STRING": "-"}).approval_ttl_days == 7
    assert Settings.from_env({"TABLES_CONNECTION_STRING": "-", "APPROVAL_TTL_DAYS": "14"}).approval_ttl_days == 14
    with pytest.raises(ConfigError, match="APPROVAL_TTL_DAYS"):
        Settings.from_env({"TABLES_CONNECTION_STRING": "-", "APPROVAL_TTL_DAYS": "0"})
    example = json.loads((APP_ROOT / "local.settings.example.json").read_text(encoding="utf-8"))
    assert example["Values"]["APPROVAL_TTL_DAYS"] == "7" and example["Documentation"]["APPROVAL_TTL_DAYS"]
    assert "APPROVAL_TTL_DAYS: '7'" in (APP_ROOT / "infra" / "main.bicep").read_text(encoding="utf-8")
