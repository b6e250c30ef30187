"""DataverseClient and the task writers against the Dataverse stand-in and Azurite."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.crm.dataverse import DataverseClient
from shared.crm.mapping import load_mapping
from shared.crm.merge import apply_event
from shared.crm.tasks import DataverseTaskWriter, LocalTaskLedger, write_task
from shared.domain.errors import InvalidInput, NotFound, Throttled, TransientError
from shared.domain.messages import ActionMessage
from shared.domain.names import TASKS
from tests.conftest import make_settings
from tests.crm_helpers import NOW, dataverse_request, sample
from tests.standins.dataverse import DataverseStandIn

CONTACT = "9c8b7a6d-1111-2222-3333-444455556666"
OWNER = "3b2c5f0e-0000-0000-0000-000000000001"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture
def dataverse():
    with DataverseStandIn() as standin:
        standin.add("systemusers", OWNER, {"systemuserid": OWNER, "internalemailaddress": "hanako@contoso.com",
                                          "fullname": "佐藤 花子", "azureactivedirectoryobjectid": "oid-hanako"})
        standin.add("contacts", CONTACT, {
            "contactid": CONTACT, "fullname": "山田 太郎", "emailaddress1": "taro@example.co.jp",
            "birthdate": "1980-11-22", "crmflow_plan": 2, "crmflow_annualspend": 1500000.0,
            "donotbulkemail": False, "modifiedon": "2025-11-22T09:00:00Z", "_ownerid_value": OWNER,
            "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
            "_ownerid_value@OData.Community.Display.V1.FormattedValue": "佐藤 花子"})
        yield standin


@pytest.fixture
def client(dataverse):
    return DataverseClient(dataverse.url, dataverse.get_token, load_mapping(MAPPINGS, "dataverse"))


def test_fetch_record_maps_columns_and_expands_the_owner(client):
    record = client.fetch_record("contact", CONTACT.upper())
    assert record["id"] == CONTACT and record["email"] == "taro@example.co.jp"
    assert record["plan"] == "Standard" and record["annual_spend"] == 1500000 and record["birthday"] == "1980-11-22"
    assert record["owner"] == {"name": "佐藤 花子", "email": "hanako@contoso.com", "aad_object_id": "oid-hanako"}
    assert record["updated_at"] == "2025-11-22T09:00:00+00:00"


def test_stripped_webhook_is_completed_by_the_refetch(tmp_path, client):
    from shared.crm.ingest import WebhookIntake

    intake = WebhookIntake(make_settings(tmp_path), broker=None, clock=lambda: NOW)
    [event] = intake.parse("dataverse", dataverse_request(
        sample("dataverse_contact_size_exceeded.json"), **{"x-ms-dynamics-msg-size-exceeded": "true"}))
    assert event.needs_refetch
    customer = apply_event(None, event, client.fetch_event_record(event))
    assert customer.email == "taro@example.co.jp" and customer.owner.email == "hanako@contoso.com"


def test_expired_token_is_refreshed_once(dataverse, client):
    client.fetch_record("contact", CONTACT)
    dataverse.revoke_tokens()
    assert client.fetch_record("contact", CONTACT)["email"] == "taro@example.co.jp"
    assert dataverse.tokens_issued == 2


def test_errors_are_classified(dataverse, client):
    dataverse.fail_next(429, **{"Retry-After": "7"})
    with pytest.raises(Throttled) as throttled:
        client.fetch_record("contact", CONTACT)
    assert throttled.value.retry_after_seconds == 7
    dataverse.fail_next(503)
    with pytest.raises(TransientError):
        client.fetch_record("contact", CONTACT)
    with pytest.raises(NotFound):
        client.fetch_record("contact", "00000000-0000-0000-0000-00000000abcd")
    with pytest.raises(InvalidInput, match="unknown entity"):
        client.fetch_record("lead", CONTACT)


def task_message(key: str = "cross-sell-b|C-001|2025") -> ActionMessage:
    return ActionMessage(
        dedupe_key=key, channel="crm_task", rule="cross-sell-b", kind="cross_sell", customer_id="C-001",
        to="hanako@contoso.com", subject="【クロスセル機会】製品B提案 - 株式会社サンプル",
        content={"description": "製品Bのデモ案内", "due": "2025-11-29", "regarding_email": "taro@example.co.jp",
                 "owner_email": "hanako@contoso.com"},
        planned_at=datetime(2025, 11, 22, 0, 0, tzinfo=UTC))


def test_dataverse_task_regarding_the_contact_owned_by_the_rep_once(dataverse, client):
    writer = DataverseTaskWriter(client)
    first = write_task(task_message(), writer)
    again = write_task(task_message(), writer)  # redelivery
    assert (first.status, again.status) == ("created", "exists") and first.task_id == again.task_id
    [task] = dataverse.tables["tasks"].values()
    assert task["subject"] == "【クロスセル機会】製品B提案 - 株式会社サンプル"
    assert task["description"] == "製品Bのデモ案内" and task["scheduledend"] == "2025-11-29T00:00:00Z"
    assert task["regardingobjectid_contact@odata.bind"] == f"/contacts({CONTACT})"
    assert task["ownerid@odata.bind"] == f"/systemusers({OWNER})"
    assert task["subcategory"] == "crmflow:cross-sell-b|C-001|2025"


def test_dataverse_task_retry_after_a_failed_create(dataverse, client):
    writer = DataverseTaskWriter(client)
    dataverse.fail_next(502, method="PATCH")  # the create fails after the lookups succeeded
    with pytest.raises(TransientError):
        write_task(task_message("k2"), writer)
    assert write_task(task_message("k2"), writer).status == "created"
    assert len(dataverse.tables["tasks"]) == 1


@pytest.mark.azurite
def test_local_ledger_writes_once(container):
    ledger = LocalTaskLedger(container.storage)
    assert write_task(task_message(), ledger).status == "created"
    assert write_task(task_message(), ledger).status == "exists"
    rows = list(container.tables.table(TASKS).list_entities())
    assert len(rows) == 1 and rows[0]["PartitionKey"] == "C-001" and rows[0]["due"] == "2025-11-29"
    assert write_task(task_message("odd/key#1"), ledger).status == "created"  # hashed RowKey


def test_task_message_must_be_a_crm_task():
    bad = ActionMessage(dedupe_key="k", channel="email", rule="r", kind="k", customer_id="C", to="x@y",
                        subject=None, content={}, planned_at=datetime(2025, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidInput):
        write_task(bad, LocalTaskLedger(storage=None))


def test_two_workers_racing_on_one_task_create_it_once(dataverse, client):
    import threading

    dataverse.lookup_delay = 0.3  # both look-ups see no task before either writes
    barrier = threading.Barrier(2)
    results = []

    def worker():
        writer = DataverseTaskWriter(DataverseClient(dataverse.url, dataverse.get_token,
                                                     load_mapping(MAPPINGS, "dataverse")))
        barrier.wait()
        results.append(write_task(task_message("race|C-001|2025"), writer))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(r.status for r in results) == ["created", "exists"]
    assert len(dataverse.tables["tasks"]) == 1
    assert results[0].task_id == results[1].task_id == DataverseTaskWriter.task_id("race|C-001|2025")
