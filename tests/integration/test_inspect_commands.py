"""`crmflow customer` and `crmflow tasks` as a user runs them: what is stored, read back from Azurite (and from
Dataverse through its stand-in); personal data goes to the terminal, never into the log."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from shared.crm.tasks import CrmTask, DataverseTaskWriter, LocalTaskLedger
from shared.customers.importer import import_customers
from shared.devtools.cli import main
from shared.opportunities.ledger import FiringClaim
from tests.standins.dataverse import DataverseStandIn

ROOT = Path(__file__).parent.parent.parent
NOW = datetime(2026, 11, 24, tzinfo=UTC)
HANAKO = "3b2c5f0e-0000-0000-0000-000000000001"
KEN = "3b2c5f0e-0000-0000-0000-000000000002"


def claim(key: str, customer_id: str, rule: str, status: str) -> FiringClaim:
    return FiringClaim(key=key, rule=rule, kind="cross_sell", customer_id=customer_id, owner_name="鈴木 健",
                       owner_email="ken.suzuki@contoso.com", status=status, recommendation="製品Bのデモ案内",
                       local_date="2026-11-24", actions=())


def task(key: str, customer_id: str, owner: str, due: date) -> CrmTask:
    return CrmTask(dedupe_key=key, customer_id=customer_id, rule=key.split(":")[0], subject=f"【クロスセル】{key}",
                   description="", due=due, regarding_email=None, owner_email=owner)


@pytest.fixture
def stored(container, monkeypatch, caplog):
    monkeypatch.setenv("TABLES_CONNECTION_STRING", container.settings.tables_connection_string)
    monkeypatch.setenv("TABLE_PREFIX", container.settings.table_prefix)
    monkeypatch.setattr("shared.devtools.commands._local.LOCAL_SETTINGS", ROOT / "absent.json")
    import_customers(container.customers, ROOT / "samples" / "customers.csv",
                     purchases_path=ROOT / "samples" / "purchases.csv", today=NOW.date())
    container.ledger.claim([claim("cross-sell-a-to-b:C-000001:ever", "C-000001", "cross-sell-a-to-b", "queued"),
                            claim("upsell-x:C-000001:2026", "C-000001", "upsell-x", "won"),
                            claim("cross-sell-a-to-b:C-000002:ever", "C-000002", "cross-sell-a-to-b", "queued")],
                           NOW)
    tasks = LocalTaskLedger(container.storage)
    tasks.write(task("cross-sell-a-to-b:C-000001:ever.a1", "C-000001", "ken.suzuki@contoso.com", date(2026, 12, 1)))
    tasks.write(task("upsell-x:C-000001:2026.a1", "C-000001", "hanako.sato@contoso.com", date(2026, 12, 8)))
    tasks.write(task("cross-sell-a-to-b:C-000002:ever.a1", "C-000002", "ken.suzuki@contoso.com", date(2026, 11, 30)))
    caplog.set_level(logging.DEBUG)
    return container.customers.get("C-000001").customer


def test_customer_shows_the_stored_record_stage_and_open_opportunities(stored, capsys, caplog):
    assert main(["-v", "customer", "C-000001"]) == 0
    out = capsys.readouterr().out
    assert stored.name in out and f"<{stored.email}>" in out and f"journey stage  {stored.stage}" in out
    assert "open opportunities: 1" in out and "cross-sell-a-to-b" in out
    assert "upsell-x" not in out  # won: no longer open
    assert stored.email not in caplog.text and stored.name not in caplog.text


def test_customer_as_json_is_the_canonical_customer(stored, capsys, caplog):
    assert main(["customer", "C-000001", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["customer"] == json.loads(json.dumps(stored.to_dict()))
    assert shown["journey"] == {"stage": stored.stage}
    assert [(o["rule"], o["status"]) for o in shown["open_opportunities"]] == [("cross-sell-a-to-b", "queued")]
    assert stored.email not in caplog.text


def test_unknown_customer_is_a_clear_error(stored, capsys):
    assert main(["customer", "C-999999"]) == 1
    assert "no customer 'C-999999'" in capsys.readouterr().err


def test_tasks_from_the_local_table_filtered_by_customer_and_owner(stored, capsys, caplog):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["DUE", "CUSTOMER", "STATUS", "OWNER"]
    assert [line.split()[0] for line in lines[1:4]] == ["2026-11-30", "2026-12-01", "2026-12-08"]  # by due date
    assert lines[-1] == "3 tasks in the local Tasks table"
    assert main(["tasks", "--customer", "C-000001", "--format", "json"]) == 0
    assert {t["owner"] for t in json.loads(capsys.readouterr().out)} == {"ken.suzuki@contoso.com",
                                                                        "hanako.sato@contoso.com"}
    assert main(["tasks", "--customer", "C-000001", "--owner", "ken.suzuki@contoso.com", "--format", "json"]) == 0
    [only] = json.loads(capsys.readouterr().out)
    assert only["dedupe_key"] == "cross-sell-a-to-b:C-000001:ever.a1" and only["due"] == "2026-12-01"
    assert "【クロスセル】" not in caplog.text


def test_tasks_written_to_dataverse_are_read_back_from_it(stored, monkeypatch, capsys):
    with DataverseStandIn() as dataverse:
        for user, address in ((HANAKO, "hanako.sato@contoso.com"), (KEN, "ken.suzuki@contoso.com")):
            dataverse.add("systemusers", user, {"systemuserid": user, "internalemailaddress": address})
        dataverse.add("tasks", "0c0c0c0c-0000-0000-0000-000000000009",
                      {"activityid": "0c0c0c0c-0000-0000-0000-000000000009", "subject": "someone else's task",
                       "subcategory": "manual", "_ownerid_value": KEN})
        from shared.crm.dataverse import DataverseClient
        from shared.crm.mapping import load_mapping

        writer = DataverseTaskWriter(DataverseClient(dataverse.url, dataverse.get_token,
                                                     load_mapping(ROOT / "mappings", "dataverse")))
        writer.write(task("cross-sell-a-to-b:C-000001:ever.a1", "C-000001", "ken.suzuki@contoso.com",
                          date(2026, 12, 1)))
        writer.write(task("upsell-x:C-000001:2026.a1", "C-000001", "hanako.sato@contoso.com", date(2026, 12, 8)))
        writer.write(task("cross-sell-a-to-b:C-000002:ever.a1", "C-000002", "ken.suzuki@contoso.com",
                          date(2026, 11, 30)))
        # The CLI's container gets its Dataverse token from the stand-in's token endpoint instead of Entra ID.
        monkeypatch.setattr("shared.crm.dataverse.msal_token_provider", lambda *args: dataverse.get_token)
        monkeypatch.setenv("CRM_TASK_TARGET", "dataverse")
        monkeypatch.setenv("DATAVERSE_URL", dataverse.url)
        monkeypatch.setenv("GRAPH_TENANT_ID", "tenant")
        monkeypatch.setenv("GRAPH_CLIENT_ID", "client")
        assert main(["tasks", "--format", "json"]) == 0
        every = json.loads(capsys.readouterr().out)
        assert [(t["target"], t["customer_id"], t["due"]) for t in every] == [
            ("dataverse", "C-000002", "2026-11-30"), ("dataverse", "C-000001", "2026-12-01"),
            ("dataverse", "C-000001", "2026-12-08")]
        assert main(["tasks", "--customer", "C-000001", "--owner", "ken.suzuki@contoso.com"]) == 0
        out = capsys.readouterr().out
        assert "cross-sell-a-to-b" in out and "upsell-x" not in out and "C-000002" not in out
        assert out.strip().endswith("1 task in Dataverse (" + dataverse.url + ")")
        assert main(["tasks", "--owner", "nobody@contoso.com"]) == 0
        assert "no tasks in Dataverse" in capsys.readouterr().out
