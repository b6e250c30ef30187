"""The journey's functions called as the host calls them: the change-event consumer moves the stage, the CRM writer
writes it back, and GET /api/customers/{id}/journey answers from the stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func

from functions.crm_tasks import crm_tasks
from functions.journeys import customer_journey
from functions.pipeline import crm_event
from shared.crm.dataverse import DataverseClient
from shared.crm.mapping import load_mapping
from shared.crm.tasks import DataverseTaskWriter
from shared.domain.events import CrmEvent
from shared.domain.names import CRM_TASKS, TASKS
from tests.functional.registered import bindings_of, sb_message
from tests.standins.dataverse import DataverseStandIn

ACCOUNT = "7a1f0c2e-aaaa-bbbb-cccc-000000000002"


def event(customer_id: str, deal: dict, event_id: str) -> str:
    return CrmEvent(source="hubspot", entity="deal", record_id=deal["id"], operation="update", event_id=event_id,
                    occurred_at=datetime.now(UTC), record={"customer_id": customer_id, "deal": deal}).to_json()


def get_journey(customer_id: str) -> func.HttpResponse:
    return customer_journey(func.HttpRequest("GET", f"http://localhost/api/customers/{customer_id}/journey",
                                             body=b"", route_params={"id": customer_id}))


def test_the_route_takes_the_functions_key():
    [trigger] = [b for b in bindings_of("customer_journey") if b["type"] == "httpTrigger"]
    assert trigger["authLevel"] == func.AuthLevel.FUNCTION and trigger["route"] == "customers/{id}/journey"


def test_change_events_move_the_stage_and_the_route_shows_it(installed):
    crm_event(sb_message(event("hs-1", {"id": "hs-d1", "type": "subscription_new", "stage": "open"}, "e1"), "m1"))
    crm_event(sb_message(event("hs-1", {"id": "hs-d1", "stage": "won"}, "e2"), "m2"))
    response = get_journey("hs-1")
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["customer"] == "hs-1" and body["stage"] == "implementation"
    assert [(h["from"], h["to"], h["cause"]) for h in body["history"]] == [
        (None, "contract", "hubspot:e1"), ("contract", "implementation", "hubspot:e2")]
    assert body["since"] == body["history"][-1]["at"]


def test_unknown_and_bad_ids(installed):
    assert get_journey("nobody").status_code == 404
    assert get_journey("a#b").status_code == 400


def test_the_crm_writer_writes_the_current_stage_back_to_dataverse(installed):
    with DataverseStandIn() as dataverse:
        dataverse.add("accounts", ACCOUNT, {"accountid": ACCOUNT, "name": "Contoso"})
        client = DataverseClient(dataverse.url, dataverse.get_token,
                                 load_mapping(installed.settings.mappings_dir, "dataverse"))
        installed.task_writer = DataverseTaskWriter(client)
        installed.settings = installed.settings.replace(crm_task_target="dataverse")
        installed.journeys.settings = installed.settings
        crm_event(sb_message(event(ACCOUNT, {"id": "d1", "type": "subscription_new", "stage": "won"}, "e1"), "m1"))
        batch = installed.broker.receive(CRM_TASKS, max_messages=50)
        kinds = sorted(json.loads(m.body)["channel"] for m in batch)
        assert kinds == ["crm_stage", "crm_task", "crm_task"]
        for message in batch:
            crm_tasks(sb_message(message.body, message.message_id))
        assert dataverse.tables["accounts"][ACCOUNT]["crmflow_stage"] == 2  # implementation
        assert len(dataverse.tables["tasks"]) == 2
        assert not list(installed.tables.table(TASKS).list_entities())
